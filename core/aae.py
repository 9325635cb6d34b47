"""The adversarial autoencoder of Sec. 3.1: encoder E, generator G, latent discriminator D_z, image
discriminator D_x. Images inside the networks live in [-1, 1]; z's prior is a standard normal."""

from __future__ import annotations

import torch
import torch.nn as nn

from fsx.backbones.registry import BackboneRegistry
from fsx.config import ModelConfig
from fsx.plugins import get_registry


class AAE(nn.Module):
    def __init__(self, config: ModelConfig, backbones: BackboneRegistry | None = None):
        super().__init__()
        c = config
        create_backbone = (backbones or get_registry().backbones).create_backbone  # the networks plugins registered
        image = dict(image_size=c.image_size, width=c.width)
        self.E = create_backbone(c.encoder, **c.backbone_kwargs("encoder", out_dim=c.z_dim, **image))
        self.G = create_backbone(c.generator, **c.backbone_kwargs("generator", in_dim=c.z_dim, **image))
        self.D_z = create_backbone(c.latent_discriminator, **c.backbone_kwargs(
            "latent_discriminator", in_dim=c.z_dim, hidden=c.latent_disc_hidden))
        self.D_x = create_backbone(c.image_discriminator, **c.backbone_kwargs("image_discriminator", **image))
        self.z_dim = c.z_dim

    def sample_prior(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """z* ~ p(z) = N(0, I), shape (n, z_dim)."""
        device = device or next(self.parameters()).device
        return torch.randn(n, self.z_dim, generator=generator).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct: G(E(x))."""
        return self.G(self.E(x))
