"""A perceptual distance that needs no downloaded weights: the features of a fixed, randomly initialised CNN.

Liu et al. (CVPR 2021, "Generic Perceptual Loss") show that the multi-scale features of a randomly weighted
network already carry the structure a perceptual loss needs: each feature is a fixed local filter bank, and
comparing the responses of two pictures compares their edges, blobs and textures at several scales rather than
their pixels. LPIPS and VGG losses need ImageNet weights that cannot be downloaded on fsx's machines; this
network is rebuilt from a seed, so nothing is stored and every run uses the same one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RandomPerceptual(nn.Module):
    """Three stages of two 3x3 convolutions (``channels`` wide, doubling per stage) with ReLU and 2x2 average
    pooling, He-initialised from ``seed`` and never trained; the distance is the mean squared difference of each
    stage's features, each stage normalised by its features' mean square on the target."""

    def __init__(self, channels: int = 16, stages: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        cin = 3
        self.stages = nn.ModuleList()
        for i in range(stages):
            cout = channels * 2**i
            convs = [nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)]
            for conv in convs:
                fan_in = conv.weight[0].numel()
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                    conv.bias.zero_()
            self.stages.append(nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU()))
            cin = cout
        self.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.avg_pool2d(x, 2)
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        """The distance between target pictures ``x`` and ``x_rec`` (both in [-1, 1]; ``x`` is a fixed target)."""
        with torch.no_grad():
            target = self.features(x.float())
        total = x_rec.new_zeros((), dtype=torch.float32)
        for t, f in zip(target, self.features(x_rec.float())):
            total = total + (f - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-8)
        return total / len(target)
