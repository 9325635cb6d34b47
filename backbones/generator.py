"""Generators G: z -> an image in [-1, 1].

``resnet18_generator`` (fsx's default): an inverted ResNet18. z -> (512w, S/32, S/32) -> four stages of
``blocks`` residual blocks (two, as ResNet18 has; S/32 -> S/4, the first block of each of the three upsampling
stages starting with a 4x4 transposed convolution of stride 2 in place of ResNet's strided 3x3) -> an inverted
stem of two 4x4 transposed convolutions (S/4 -> S) -> a 3x3 convolution to RGB.

``mad_generator``: the decoder of the authors' public code (github.com/browatbn2/MAD, ``InvResNet``), so that the
``mad`` preset does the same work as their training: z -> (512w, 1, 1) -> a 4x4 transposed convolution to 4x4 ->
stages of 256w, 128w, 64w, 64w channels (one more 64w stage at 256 px), each doubling the resolution in its first
block (a 4x4 transposed convolution, with a transposed-convolution shortcut) -> a 4x4 transposed convolution of
stride 2 to RGB. It runs its wide layers at lower resolution than ``resnet18_generator`` does (about half the
FLOPs at 128 px with one block per stage).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fsx.sizes import check_size, scaled


class InvertedBasicBlock(nn.Module):
    """ResNet's basic block run backwards: ``upsample`` doubles the resolution in the first convolution. The
    shortcut of an upsampling block is a nearest upsample and a 1x1 convolution, or (``transposed_shortcut``, as
    in the authors' code) a 4x4 transposed convolution."""

    def __init__(self, cin: int, cout: int, upsample: bool, transposed_shortcut: bool = False):
        super().__init__()
        if upsample:
            self.conv1 = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)  # H -> 2H
        else:
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if upsample and transposed_shortcut:
            self.shortcut = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                                          nn.BatchNorm2d(cout))
        elif upsample or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def generator_stage(cin: int, cout: int, blocks: int, upsample: bool, transposed_shortcut: bool = False) -> list:
    """One stage of a generator: a block that changes channels (and doubles the resolution when ``upsample``),
    then ``blocks - 1`` blocks that keep both."""
    if not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"the generator's blocks per stage must be an integer >= 1, got {blocks!r}")
    return [InvertedBasicBlock(cin, cout, upsample, transposed_shortcut)] + [
        InvertedBasicBlock(cout, cout, False) for _ in range(blocks - 1)]


class InvertedResNet18(nn.Module):
    def __init__(self, in_dim: int = 99, image_size: int = 128, width: float = 1.0, blocks: int = 2):
        super().__init__()
        check_size(image_size)
        chans = [scaled(c, width) for c in (512, 256, 128, 64)]
        self.c0, self.s0 = chans[0], image_size // 32
        self.fc = nn.Linear(in_dim, self.c0 * self.s0 * self.s0)  # z (N, in_dim) -> (N, 512w, S/32, S/32)
        self.bn0 = nn.BatchNorm2d(self.c0)
        layers, cin = [], self.c0
        for cout, up in zip(chans, (True, True, True, False)):  # layer4 .. layer1 of ResNet18, reversed
            layers += generator_stage(cin, cout, blocks, up)
            cin = cout
        self.blocks = nn.Sequential(*layers)  # -> (N, 64w, S/4, S/4)
        c_half = scaled(32, width)
        self.head = nn.Sequential(  # the stem (7x7 stride-2 conv + max-pool), inverted
            nn.ConvTranspose2d(cin, cin, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(True),
            nn.ConvTranspose2d(cin, c_half, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_half), nn.ReLU(True),
            nn.Conv2d(c_half, 3, 3, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.c0, self.s0, self.s0)
        x = torch.relu(self.bn0(x))
        x = self.blocks(x)  # (N, 64w, S/4, S/4)
        return self.head(x)  # (N, 3, S, S) in [-1, 1]


class MADGenerator(nn.Module):
    def __init__(self, in_dim: int = 99, image_size: int = 128, width: float = 1.0, blocks: int = 1):
        super().__init__()
        doublings = check_size(image_size)  # 4 -> S: 32 px has three stages, 256 px six
        c0 = scaled(512, width)
        self.fc = nn.Linear(in_dim, c0)
        self.stem = nn.Sequential(nn.ConvTranspose2d(c0, c0, 4, bias=False), nn.BatchNorm2d(c0), nn.ReLU(True))  # 1 -> 4
        chans = [scaled(c, width) for c in (256, 128, 64, 64, 64, 64)][: doublings - 1]
        layers, cin = [], c0
        for cout in chans:
            layers += generator_stage(cin, cout, blocks, True, transposed_shortcut=True)
            cin = cout
        self.blocks = nn.Sequential(*layers)  # -> (N, 64w, S/2, S/2)
        self.to_rgb = nn.Sequential(nn.ConvTranspose2d(cin, 3, 4, stride=2, padding=1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.fc(z)[:, :, None, None])  # (N, 512w, 4, 4)
        return self.to_rgb(self.blocks(x))  # (N, 3, S, S) in [-1, 1]


def mad_generator(in_dim: int = 99, image_size: int = 128, width: float = 1.0, blocks: int = 1) -> nn.Module:
    return MADGenerator(in_dim=in_dim, image_size=image_size, width=width, blocks=blocks)


def resnet18_generator(in_dim: int = 99, image_size: int = 128, width: float = 1.0, blocks: int = 2) -> nn.Module:
    return InvertedResNet18(in_dim=in_dim, image_size=image_size, width=width, blocks=blocks)
