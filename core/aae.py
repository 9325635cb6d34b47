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
        # A Gaussian fitted to E's codes of training pictures (``fit_codes``), for drawing new faces. D_z pulls the
        # codes towards N(0, I) but does not get them there: they fill a smaller, tilted region, and G draws
        # faces there only. How far off they are grows with training, and a prior sample then asks G to draw from
        # where it never learnt to. Until fitted: the prior itself (mean 0, Cholesky factor I).
        for name, value in self.standard_codes().items():
            self.register_buffer(name, value)

    def standard_codes(self) -> dict[str, torch.Tensor]:
        """The code Gaussian's buffers before any fit (and for a file from before they existed): N(0, I) itself."""
        return {"code_mean": torch.zeros(self.z_dim), "code_scale": torch.eye(self.z_dim)}

    @property
    def codes_fitted(self) -> bool:
        """Whether ``sample_codes`` draws from a fitted Gaussian rather than from N(0, I)."""
        return any(not torch.equal(getattr(self, k), v.to(getattr(self, k).device))
                   for k, v in self.standard_codes().items())

    def sample_prior(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """z* ~ p(z) = N(0, I), shape (n, z_dim)."""
        device = device or next(self.parameters()).device
        return torch.randn(n, self.z_dim, generator=generator).to(device)

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z* ~ N(code_mean, code_scale code_scale^T), the Gaussian ``fit_codes`` fitted, shape (n, z_dim); the same
        noise as ``sample_prior`` for the same generator."""
        eps = self.sample_prior(n, generator=generator, device=self.code_mean.device)
        return self.code_mean + eps @ self.code_scale.T

    @torch.no_grad()
    def fit_codes(self, z: torch.Tensor) -> None:
        """Fit ``sample_codes``' Gaussian to codes z (N, z_dim): their mean and covariance, in float64; a small
        ridge keeps the Cholesky factor defined where the codes span fewer than z_dim directions."""
        if z.ndim != 2 or z.shape[1] != self.z_dim or len(z) < 2:
            raise ValueError(f"fit_codes: need codes of shape (N >= 2, {self.z_dim}), got {tuple(z.shape)}")
        z = z.double()
        cov = torch.cov(z.T) + 1e-6 * torch.eye(self.z_dim, dtype=z.dtype, device=z.device)
        self.code_mean.copy_(z.mean(0))
        self.code_scale.copy_(torch.linalg.cholesky(cov))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before the fitted code Gaussian lack its buffers: they load with the prior in its place.
        for name, default in self.standard_codes().items():
            state_dict.setdefault(prefix + name, default)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct: G(E(x))."""
        return self.G(self.E(x))
