"""FaceModel: the one user-facing model. Images in and out are float tensors in [0, 1], shape (N, 3, H, W)."""

from __future__ import annotations

import hashlib

from typing import Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from fsx.aae import AAE
from fsx.config import ModelConfig
from fsx.disentangler import Disentangler
from fsx.layout import Layout
from fsx.plugins import get_registry

PRIORS = ("codes", "standard")  # what ``FaceModel.generate`` draws z* from


def to_net(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return images * 2.0 - 1.0


def from_net(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], in torch's default layout whatever layout G computed in (a channels_last tensor cannot be
    ``.view()``-ed as users' code expects)."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0).contiguous()


# The edits ``FaceModel.transfer(..., residual=...)`` can make besides the paper's (None).
RESIDUAL_EDITS = ("full", "projected")


def along_edit(phi_inv: nn.Module, f: torch.Tensor, mask: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The part of r (N, z_dim) that moving the masked entries of f (N, f_dim) could make: r's least-squares
    projection onto the columns of the Jacobian d phi_inv / d f[mask] at each face's f."""
    jac = torch.func.vmap(torch.func.jacrev(phi_inv))(f)[:, :, mask]  # (N, z_dim, k)
    coef = torch.linalg.lstsq(jac, r.unsqueeze(-1)).solution  # (N, k, 1)
    return (jac @ coef).squeeze(-1)


class FaceModel(nn.Module):
    """The AAE (E, G, D_z, D_x) plus the disentangler (Phi, Phi^-1) over an attribute layout.

    >>> model = fsx.load("model.safetensors")
    >>> feats = model.encode(images)          # {"pose": (N, 3), "identity": (N, 32), ..., "z": (N, 99)}
    >>> edited = model.transfer(a, b, ["expression"])  # b with a's expression
    """

    def __init__(self, config: ModelConfig, metadata: Mapping[str, object] | None = None, registry=None):
        super().__init__()
        self.config = config
        self.metadata = dict(metadata or {})
        self.layout = Layout((s.name, s.dim) for s in config.attributes)
        self.aae = AAE(config, registry.backbones if registry is not None else None)
        self.disentangler = Disentangler(config.z_dim, self.layout.dim, config.phi_hidden, config.disentangler)
        # channels_last, as fsx trains: oneDNN's and cuDNN's convolutions are faster in it, and G's nearest upsample
        # is far slower in NCHW on a CPU (a loaded model's generate, transfer and reconstruct included)
        self.to(memory_format=torch.channels_last)

    # --- description -------------------------------------------------------------------------------
    @property
    def attributes(self) -> dict[str, int]:
        """Attribute name -> sub-vector dim, in layout order."""
        return self.layout.dims

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor (N, 3, H, W) in [0, 1], got {shape}")
        s = self.config.image_size
        if images.shape[-2:] != (s, s):
            raise ValueError(f"this model takes {s}x{s} images, got {tuple(images.shape[-2:])}; resize first")
        return images.to(self.device, torch.float32)

    # --- the four operations ----------------------------------------------------------------------
    def encode_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images -> (z (N, z_dim), f (N, f_dim))."""
        z = self.aae.E(to_net(self._check_images(images)))
        return z, self.disentangler.phi(z)

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{attribute: (N, dim_k)} for every attribute, plus the raw latent under ``"z"``."""
        z, f = self.encode_features(images)
        out = self.layout.split(f)
        out["z"] = z
        return out

    @torch.no_grad()
    def encode_batches(self, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``encode`` over an iterable of image batches, concatenated on the CPU, with the joined f under "f":
        how every tool encodes a data set or a list of files without holding them all on the device. No batches:
        an empty dict."""
        out: dict[str, list] = {}
        for images in batches:
            z, f = self.encode_features(images)
            for k, v in {**self.layout.split(f), "z": z, "f": f}.items():
                out.setdefault(k, []).append(v.cpu())
        return {k: torch.cat(v) for k, v in out.items()}

    def decode(self, features: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Sub-vectors (a dict as ``encode`` returns, ``"z"`` ignored) or a joined f (N, f_dim) -> images."""
        f = features if isinstance(features, torch.Tensor) else self.layout.join(features)
        return from_net(self.aae.G(self.disentangler.phi_inv(f.to(self.device))))

    def autoencode(self, images: torch.Tensor) -> torch.Tensor:
        """G(E(x)): the image as the autoencoder alone sees it (no disentangler)."""
        return from_net(self.aae(to_net(self._check_images(images))))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """G(Phi^-1(Phi(E(x)))): the image as the disentangled embedding sees it."""
        return self.decode(self.encode_features(images)[1])

    def transfer(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        attributes: str | Iterable[str],
        everything_except: bool = False,
        residual: str | None = None,
    ) -> torch.Tensor:
        """``target`` with ``source``'s sub-vectors for ``attributes`` (Fig. 5, rows 1-4); with
        ``everything_except=True``, all sub-vectors *but* those come from the source (rows 5-8).

        ``residual`` also keeps what the embedding does not return of the face the edit stays on, B (the target;
        the source with ``everything_except``), r = z_B - Phi^-1(f_B). Phi^-1(Phi(z)) is not exactly z, so the
        paper's edit, G(Phi^-1(f*)), draws every unedited factor as the embedding's reconstruction does
        (``reconstruct``).

        - ``"full"``: G(Phi^-1(f*) + r). The unedited factors are drawn as the autoencoder draws them
          (``autoencode``: a face transferred onto itself comes back as G(E(x))). What r carries is not sorted by
          attribute, so the edited factor moves less towards the source's by whatever of it the round trip loses.
        - ``"projected"``: G(Phi^-1(f*) + r - J J^+ r), J = d Phi^-1 / d f at f_B for the edited sub-vectors only:
          r without the part that looks like a change of the edited factor. The edited factor moves nearly as
          far as in the paper's edit; a face transferred onto itself comes back close to, not exactly as, G(E(x)).

        docs/experiments.md ("The residual edit") measures each against the paper's edit, attribute by attribute.

        source: (1 or N, 3, H, W); target: (N, 3, H, W).
        """
        if residual is not None and residual not in RESIDUAL_EDITS:
            raise ValueError(f"residual must be None, {' or '.join(map(repr, RESIDUAL_EDITS))}, got {residual!r}")
        names = [attributes] if isinstance(attributes, str) else list(attributes)
        mask = self.layout.mask(names, device=self.device)  # (f_dim,)
        if everything_except:
            mask = ~mask
        z_src, f_src = self.encode_features(source)
        z_tgt, f_tgt = self.encode_features(target)
        f = torch.where(mask, f_src.expand_as(f_tgt), f_tgt)
        if residual is None:
            return self.decode(f)
        z, f_base = (z_src.expand_as(z_tgt), f_src.expand_as(f_tgt)) if everything_except else (z_tgt, f_tgt)
        phi_inv = self.disentangler.phi_inv
        r = z - phi_inv(f_base)
        if residual == "projected":
            r = r - along_edit(phi_inv, f_base, mask, r)
        return from_net(self.aae.G(phi_inv(f) + r))

    def generate(self, n: int, generator: torch.Generator | None = None, prior: str = "codes") -> torch.Tensor:
        """n random faces G(z*). ``prior="codes"``: z* from the Gaussian fitted to E's codes of training pictures
        when training ended (``AAE.fit_codes``; the prior itself for a model never fitted); ``"standard"``: from
        the prior N(0, I) of Eq. (5), as the paper samples."""
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        sample = self.aae.sample_codes if prior == "codes" else self.aae.sample_prior
        return from_net(self.aae.G(sample(n, generator=generator)))

    def fingerprint(self) -> str:
        """A short hash of the weights: what an embeddings file records, so that it is compared only with
        embeddings of the same model."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def extra_repr(self) -> str:
        return f"image_size={self.config.image_size}, z_dim={self.config.z_dim}, attributes={self.attributes}"


def build_model(attributes: Sequence | str, registry=None, **config) -> FaceModel:
    """A new, untrained model for attribute names/aliases (resolved through the plugin registry)."""
    registry = registry or get_registry()
    resolved = registry.resolve(attributes)
    return FaceModel(ModelConfig.for_attributes(resolved, **config), registry=registry)
