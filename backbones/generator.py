"""G: an inverted ResNet18. z -> 4x4 feature map -> four stages of two residual blocks -> image in [-1, 1].

The first block of each upsampling stage starts with a 4x4 transposed convolution (stride 2) in place of
ResNet's strided 3x3 convolution. At 64 px the four stages give the four doublings 4 -> 64; at 32 px the
first stage keeps its size; at 128 and 256 px one or two more 4x4 transposed convolutions finish the job.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fsx.backbones.registry import check_size, register_backbone, scaled


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
        doublings = check_size(image_size)
        chans = [scaled(c, width) for c in (512, 256, 128, 64)]
        self.c0 = chans[0]
        self.fc = nn.Linear(in_dim, self.c0 * 4 * 4)  # z (N, in_dim) -> (N, c0, 4, 4)
        self.bn0 = nn.BatchNorm2d(self.c0)
        stage_up = [False] * (4 - min(doublings, 4)) + [True] * min(doublings, 4)
        blocks, cin = [], self.c0
        for cout, up in zip(chans, stage_up):
            blocks += [InvertedBasicBlock(cin, cout, up), InvertedBasicBlock(cout, cout, False)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        head = []
        for _ in range(max(0, doublings - 4)):  # 128 px: one more doubling, 256 px: two
            head += [nn.ConvTranspose2d(cin, cin, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(True)]
        head += [nn.Conv2d(cin, 3, 3, padding=1), nn.Tanh()]
        self.head = nn.Sequential(*head)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.c0, 4, 4)
        x = torch.relu(self.bn0(x))
        x = self.blocks(x)  # (N, 64w, min(size, 64), ...)
        return self.head(x)  # (N, 3, size, size) in [-1, 1]


@register_backbone
def resnet18_generator(in_dim: int = 99, image_size: int = 128, width: float = 1.0) -> nn.Module:
    return InvertedResNet18(in_dim=in_dim, image_size=image_size, width=width)
