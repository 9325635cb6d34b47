"""G: an inverted ResNet18, the encoder's mirror image. z -> (512w, S/32, S/32) -> four stages of two residual
blocks (S/32 -> S/4, the first block of each of the three upsampling stages starting with a 4x4 transposed
convolution of stride 2 in place of ResNet's strided 3x3) -> an inverted stem of two 4x4 transposed
convolutions (S/4 -> S) -> a 3x3 convolution to RGB in [-1, 1].

Mirroring the encoder matters for cost: like the encoder, G spends its wide layers at low resolution.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fsx.backbones.registry import check_size, scaled


class InvertedBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, upsample: bool):
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
        if upsample or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class InvertedResNet18(nn.Module):
    def __init__(self, in_dim: int = 99, image_size: int = 128, width: float = 1.0):
        super().__init__()
        check_size(image_size)
        chans = [scaled(c, width) for c in (512, 256, 128, 64)]
        self.c0, self.s0 = chans[0], image_size // 32
        self.fc = nn.Linear(in_dim, self.c0 * self.s0 * self.s0)  # z (N, in_dim) -> (N, 512w, S/32, S/32)
        self.bn0 = nn.BatchNorm2d(self.c0)
        blocks, cin = [], self.c0
        for cout, up in zip(chans, (True, True, True, False)):  # layer4 .. layer1 of ResNet18, reversed
            blocks += [InvertedBasicBlock(cin, cout, up), InvertedBasicBlock(cout, cout, False)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)  # -> (N, 64w, S/4, S/4)
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


def resnet18_generator(in_dim: int = 99, image_size: int = 128, width: float = 1.0) -> nn.Module:
    return InvertedResNet18(in_dim=in_dim, image_size=image_size, width=width)
