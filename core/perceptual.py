"""Perceptual distances that need no downloaded weights, for L_rec's ``loss.rec_perceptual`` term: the distance
between two pictures' features in a fixed network, each layer's squared difference normalised by the target's mean
square (so that every layer counts alike whatever its activations' scale), averaged over the layers.

``PERCEPTUAL_NETWORKS`` names the networks ``loss.rec_perceptual_net`` chooses from:

- ``random``: a fixed, randomly initialised CNN. Liu et al. (CVPR 2021, "Generic Perceptual Loss") show that the
  multi-scale features of a randomly weighted network already carry the structure a perceptual loss needs: each
  feature is a fixed local filter bank, and comparing the responses of two pictures compares their edges, blobs and
  textures at several scales rather than their pixels. LPIPS and VGG losses need ImageNet weights that cannot be
  downloaded on fsx's machines; this network is rebuilt from a seed, so nothing is stored and every run uses the
  same one.
- ``onet``: MTCNN's ONet (:mod:`fsx.onet`), a face network trained to find the eyes, nose and mouth corners; its
  weights ship inside the facenet-pytorch wheel. The pictures are resized to its 48 x 48 input.
- ``inception``: the first five convolutions of the FID Inception (:mod:`fsx.eval.inception`; then FID and the loss
  share a network), at the picture's own size: at 64 px they cost about what the random network does.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsx.onet import SIZE as ONET_SIZE

PERCEPTUAL_NETWORKS = ("random", "onet", "inception")


def feature_distance(target: list[torch.Tensor], features: list[torch.Tensor]) -> torch.Tensor:
    """Each layer's mean squared difference over the target's mean square, averaged over the layers."""
    total = features[0].new_zeros((), dtype=torch.float32)
    for t, f in zip(target, features):
        total = total + (f - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-8)
    return total / len(target)


class FeatureDistance(nn.Module):
    """The distance between target pictures ``x`` and ``x_rec`` (both in [-1, 1]; ``x`` is a fixed target, so its
    features take no gradient) in the layers of ``self.features``."""

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(x.float())
        return feature_distance(target, self.features(x_rec.float()))


class RandomPerceptual(FeatureDistance):
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


class ONetPerceptual(FeatureDistance):
    """ONet's five layers (:meth:`fsx.onet.ONet.features`) on the pictures resized to 48 x 48."""

    def __init__(self, onet: nn.Module):
        super().__init__()
        self.onet = onet.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-2:] != (ONET_SIZE, ONET_SIZE):
            x = F.interpolate(x, size=(ONET_SIZE, ONET_SIZE), mode="bilinear", align_corners=False, antialias=True)
        return self.onet.features(x)


class InceptionPerceptual(FeatureDistance):
    """The FID Inception's first three convolutions and the two after its first pooling (``conv`` .. ``conv_4``);
    the distance uses ``conv``, ``conv_2`` and ``conv_4`` (32, 64 and 192 channels)."""

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.layers = inception.net.layers.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.layers
        a = n.conv(x)
        b = n.conv_2(n.conv_1(a))
        c = n.conv_4(n.conv_3(F.max_pool2d(b, 3, 2)))
        return [a, b, c]

