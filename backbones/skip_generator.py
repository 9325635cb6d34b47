"""``skip_generator``: a generator designed to draw a face's small parts at 64-128 px.

z -> a linear layer to (C(4), 4, 4) -> for every doubling up to the image size: a nearest 2x upsample and two
3x3 convolutions with leaky ReLU -> a 1x1 "to RGB" convolution at every resolution. The image is the sum of the
RGB outputs, each coarser one upsampled (StyleGAN2's "skip" generator, Karras et al., 2020), squashed by tanh.

Why this shape, against the inverted ResNet18 (``resnet18_generator``):
- channels are spent where the parts are drawn: C(r) = max(floor, min(coarse, width * 8192 / r)) with ``coarse``
  512 x width by default gives 128, 128, 128, 64 and 32 channels from 4 to 64 px at width 0.25, where a width
  multiplier on ResNet's 512..64 channels leaves 8 at 64 px; ``coarse`` sets the channels at the coarse scales,
  where the face's shape is placed, apart from the fine ones (doubling them also doubles the input of the first
  finer convolution, so it is not free);
- nearest upsampling and 3x3 convolutions, not 4x4 transposed convolutions (no checkerboards, Odena et al., 2016);
- no normalisation: BatchNorm couples the pictures of a batch and, in the last layers, shifts every picture's
  colours with the batch's statistics (G sees codes of real pictures, prior samples and edits in one run);
- an RGB output at every scale, summed: the coarse scales settle where the face's parts go before the fine ones
  draw them, and ``pyramid(z)`` hands each scale's image to a reconstruction loss at that scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsx.sizes import check_size


def stage_channels(resolution: int, width: float, floor: int, coarse: int = 0) -> int:
    """Channels at one resolution: halving with each doubling of the resolution, at most ``coarse`` (0: 512 x
    width) at the coarse scales, never under ``floor``."""
    cap = coarse if coarse > 0 else 512 * width
    return max(int(floor), int(round(min(cap, width * 8192 / resolution))))


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    # He initialisation for leaky ReLU: without a normalisation layer the signal must keep its scale by itself
    nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return conv


class SkipBlock(nn.Module):
    """Double the resolution (nearest) and draw: two 3x3 convolutions with leaky ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = _conv(cin, cout, 3), _conv(cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(self.conv2(x), 0.2)


class SkipGenerator(nn.Module):
    def __init__(self, in_dim: int = 99, image_size: int = 64, width: float = 0.25, floor: int = 32, coarse: int = 0):
        super().__init__()
        if not (isinstance(coarse, int) and coarse >= 0):
            raise ValueError(f"skip_generator: coarse must be a whole number of channels >= 0 (0: 512 x width), "
                             f"got {coarse!r}")
        doublings = check_size(image_size)
        self.resolutions = [4 * 2**i for i in range(doublings + 1)]  # 4, 8, ..., image_size
        chans = [stage_channels(r, width, floor, coarse) for r in self.resolutions]
        self.c0 = chans[0]
        self.fc = nn.Linear(in_dim, self.c0 * 16)  # z -> (N, C(4), 4, 4)
        self.conv0 = _conv(self.c0, self.c0, 3)
        self.blocks = nn.ModuleList(SkipBlock(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.to_rgb = nn.ModuleList(nn.Conv2d(c, 3, 1) for c in chans)
        for rgb in self.to_rgb:  # each scale starts by adding little, so the sum starts near grey
            nn.init.normal_(rgb.weight, std=1 / math.sqrt(rgb.in_channels) / len(chans))
            nn.init.zeros_(rgb.bias)

    def pyramid(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The image at every resolution, coarsest first, each in [-1, 1]; the last is ``forward(z)``."""
        x = F.leaky_relu(self.fc(z), 0.2).view(-1, self.c0, 4, 4)
        x = F.leaky_relu(self.conv0(x), 0.2)
        rgb = self.to_rgb[0](x)
        out = [torch.tanh(rgb)]
        for block, to_rgb in zip(self.blocks, self.to_rgb[1:]):
            x = block(x)
            rgb = F.interpolate(rgb, scale_factor=2, mode="nearest") + to_rgb(x)
            out.append(torch.tanh(rgb))
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.pyramid(z)[-1]  # (N, 3, S, S) in [-1, 1]


def skip_generator(in_dim: int = 99, image_size: int = 64, width: float = 0.25, floor: int = 32,
                   coarse: int = 0) -> nn.Module:
    return SkipGenerator(in_dim=in_dim, image_size=image_size, width=width, floor=floor, coarse=coarse)
