"""D_x (DCGAN image discriminator) and D_z (MLP latent discriminator). Both return one logit per sample."""

from __future__ import annotations

import torch
import torch.nn as nn

from fsx.sizes import check_size, scaled


class DCGANDiscriminator(nn.Module):
    """Strided 4x4 convolutions halve the image down to 4x4 (BatchNorm after all but the first, LeakyReLU 0.2),
    then a 4x4 convolution gives the logit (Radford et al.)."""

    def __init__(self, image_size: int = 128, width: float = 1.0):
        super().__init__()
        halvings = check_size(image_size)
        layers, cin = [], 3
        for i in range(halvings):
            cout = scaled(min(64 * 2**i, 512), width)
            layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers)  # (N, 3, S, S) -> (N, cin, 4, 4)
        self.logit = nn.Conv2d(cin, 1, 4)  # -> (N, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.features(x)).flatten(1).squeeze(1)  # (N,)

    def feature_maps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the activation after each LeakyReLU, the logits (N,)) in one pass: what the feature-matching loss
        compares between a real picture and its reconstruction."""
        maps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(x)
        return maps, self.logit(x).flatten(1).squeeze(1)


class LatentDiscriminator(nn.Module):
    """Three fully connected layers of ``hidden`` units with BatchNorm, ReLU and dropout 0.2, then a logit."""

    def __init__(self, in_dim: int = 99, hidden: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers, cin = [], in_dim
        for _ in range(3):
            layers += [nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            cin = hidden
        layers.append(nn.Linear(cin, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)  # (N,)


def dcgan_discriminator(image_size: int = 128, width: float = 1.0) -> nn.Module:
    return DCGANDiscriminator(image_size=image_size, width=width)


def mlp_latent_discriminator(in_dim: int = 99, hidden: int = 1000, dropout: float = 0.2) -> nn.Module:
    return LatentDiscriminator(in_dim=in_dim, hidden=hidden, dropout=dropout)
