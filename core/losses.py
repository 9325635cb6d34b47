"""The loss terms of Eq. (1)-(14) as plain functions of tensors and networks.

GAN terms use the non-saturating form: each discriminator minimises binary cross-entropy on real (1) vs
fake (0) logits, each generator side minimises the cross-entropy of its fakes against 1. The min-max of
Eq. (5) is split accordingly into ``aae_generator_losses`` (E, G) and ``aae_discriminator_losses`` (D_z, D_x).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from fsx.layout import Layout


def bce_real(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def bce_fake(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def reconstruction_l1(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Eq. (1) / Eq. (6): mean absolute error."""
    return (x - x_rec).abs().mean()


def reconstruction_squared(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Mean squared error: Eq. (1) with the square (``loss.rec_error="squared"``)."""
    return (x - x_rec).pow(2).mean()


RECONSTRUCTION_ERRORS = {"l1": reconstruction_l1, "squared": reconstruction_squared}


def ssim_loss(x: torch.Tensor, x_rec: torch.Tensor, window: int = 7) -> torch.Tensor:
    """1 - SSIM (Wang et al., 2004) between images in [-1, 1], from ``pytorch_msssim``. SSIM compares local
    means, contrasts and structure in every 7x7 window, so an eye or a mouth missing from a skin-coloured patch
    costs as much as a wrong colour over a whole window, where a pixel error spreads it over the picture."""
    from pytorch_msssim import ssim

    return 1 - ssim((x.float() + 1) / 2, (x_rec.float() + 1) / 2, data_range=1.0, win_size=window)


def pyramid_reconstruction(x: torch.Tensor, scales: Sequence[torch.Tensor], error) -> torch.Tensor:
    """``error`` between each coarse image of a multi-scale generator (``pyramid(z)`` but its last) and ``x``
    average-pooled to that size, averaged over the scales: each scale is asked for its own picture, so the coarse
    ones settle where the face's parts go before the fine ones draw them."""
    coarse = scales[:-1]
    if not coarse:
        return x.new_zeros(())
    return sum(error(F.adaptive_avg_pool2d(x, s.shape[-1]), s.float()) for s in coarse) / len(coarse)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass images, finest first (each the detail that 2x2 average pooling removes), then the coarse rest."""
    bands = []
    for _ in range(levels):
        if min(x.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(x, 2)
        bands.append(x - F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False))
        x = low
    return bands + [x]


def laplacian_l1(x: torch.Tensor, x_rec: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """L1 per band of a Laplacian pyramid, each band's mean counted once (Bojanowski et al., 2018): the few
    pixels of an eye or a mouth weigh as much in their band as the whole face's colour does in the coarsest,
    where plain L1 lets the large smooth areas decide."""
    return sum((a - b).abs().mean() for a, b in zip(laplacian_pyramid(x, levels), laplacian_pyramid(x_rec, levels)))


def feature_matching_l1(real_maps: Sequence[torch.Tensor], rec_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between D_x's activations of each real picture and of its reconstruction, averaged over layers
    (the learned similarity of VAE-GAN, Larsen et al., 2016): D_x learns what tells a reconstruction from its
    original (missing eyes, a blurred mouth), so matching its features pays for parts that pixel L1 weighs by
    their few pixels. The real side is a fixed target."""
    return sum((r.detach().float() - f.float()).abs().mean() for r, f in zip(real_maps, rec_maps)) / len(real_maps)


def aae_generator_losses(d_z_enc, d_x_rec, d_x_prior) -> dict[str, torch.Tensor]:
    """The E/G side of Eq. (2)-(4): fool D_z with E(x), D_x with G(E(x)) and with G(z*)."""
    return {"enc": bce_real(d_z_enc), "adv": bce_real(d_x_rec), "gen": bce_real(d_x_prior)}


def latent_discriminator_loss(d_z_prior, d_z_enc) -> torch.Tensor:
    """The D side of Eq. (2): D_z tells z* ~ p(z) from E(x)."""
    return bce_real(d_z_prior) + bce_fake(d_z_enc)


def image_discriminator_losses(d_x_real, d_x_rec, d_x_prior) -> dict[str, torch.Tensor]:
    """The D side of Eq. (3)-(4): D_x tells x from G(E(x)) and from G(z*)."""
    real = bce_real(d_x_real)
    return {"d_adv": real + bce_fake(d_x_rec), "d_gen": real + bce_fake(d_x_prior)}


def aae_discriminator_losses(d_z_prior, d_z_enc, d_x_real, d_x_rec, d_x_prior) -> dict[str, torch.Tensor]:
    """The D side of Eq. (2)-(4) at once."""
    return {"d_enc": latent_discriminator_loss(d_z_prior, d_z_enc), **image_discriminator_losses(d_x_real, d_x_rec, d_x_prior)}


def r1_penalty(logits_real: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """E||d logit / d input||^2 over real samples (R1, Mescheder et al., 2018): a discriminator that must stay flat
    on the real data cannot grow the cliff that leaves the generator's side with a useless gradient.
    ``inputs`` must require grad and be what ``logits_real`` was computed from."""
    (grad,) = torch.autograd.grad(logits_real.float().sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def aae_objective(terms: Mapping[str, torch.Tensor], lambda_ae: float = 0.9, rec_weight: float = 1.0,
                  image_gan_weight: float = 1.0) -> torch.Tensor:
    """Eq. (5), E/G side: lambda_AE (L_rec + L_adv) + L_enc + L_gen. The factors (1 in the paper) rescale L_rec
    and the image GAN terms (L_adv, L_gen) for settings that depart from it (the demo preset)."""
    w = image_gan_weight
    return lambda_ae * (rec_weight * terms["rec"] + w * terms["adv"]) + terms["enc"] + w * terms["gen"]


def image_discriminator_objective(terms: Mapping[str, torch.Tensor], lambda_ae: float = 0.9) -> torch.Tensor:
    """Eq. (5), D_x side: lambda_AE on the reconstruction-vs-real term, as on the E/G side, plus the prior term."""
    return lambda_ae * terms["d_adv"] + terms["d_gen"]


def shuffle_attributes(f: torch.Tensor, layout: Layout, names: Sequence[str], generator: torch.Generator | None = None,
                       samples: int | None = None):
    """pi of Sec. 3.5 for every attribute at once: for attribute k, copies of rows of f whose k-th sub-vector is
    taken from other rows. With ``samples`` None every row is edited for every attribute (f* has len(names) * B
    rows); with ``samples`` = m, m random rows per attribute are (len(names) * m rows: the cycle through G and E
    then costs m images per attribute instead of B).

    Returns f* (len(names) * m, F) and, per attribute, the rows its k-th sub-vector came from (len(names), m):
    the labels of attribute k for the edited rows are the labels of those rows."""
    B = f.shape[0]
    m = B if samples is None else max(1, min(int(samples), B))
    edited, sources = [], []
    for name in names:
        sl = layout.slices[name]
        src = torch.randperm(B, generator=generator)[:m].to(f.device)
        base = slice(None) if m == B else torch.randperm(B, generator=generator)[:m].to(f.device)
        e = f[base].clone()
        e[:, sl] = f[src, sl]
        edited.append(e)
        sources.append(src)
    return torch.cat(edited), torch.stack(sources)


def cycle_l1(f_star: torch.Tensor, f_cycled: torch.Tensor) -> torch.Tensor:
    """Eq. (8): ||pi(f) - I(pi(f))||_1, averaged."""
    return (f_star - f_cycled).abs().mean()


def _attribute_loss(a, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator,
                    parts: dict | None = None) -> torch.Tensor | None:
    """weight * F_k on the rows that carry the attribute's labels (all of them for a fully labelled batch);
    None where fewer than two rows do. A loss that returns named parts is summed; ``parts``, when given,
    receives each of them weighted and detached as ``"<attribute>.<part>"``."""
    rows = a.labelled_rows(labels)
    if not bool(rows.all()):
        if int(rows.sum()) < 2:
            return None
        rows = rows.to(features.device)
        features = features[rows]
        labels = {k: v[rows.to(v.device)] for k, v in labels.items()}
    loss = a.loss(features, labels, generator)
    named = dict(loss) if isinstance(loss, Mapping) else {"": loss}
    bad = next(((part, v) for part, v in named.items() if not (torch.is_tensor(v) and v.ndim == 0)), None)
    if bad is not None or not named:
        who = f"{a.qualified_name}: its loss returned"
        if bad is None:
            raise ValueError(f"{who} an empty mapping, not a scalar tensor")
        part, value = bad
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise ValueError(f"{who} {f'part {part!r}: ' if part else ''}{shape}, not a scalar tensor")
    if parts is not None and isinstance(loss, Mapping):
        parts.update({f"{a.name}.{part}": a.weight * value.detach() for part, value in named.items()})
    return a.weight * sum(named.values())


def task_losses(f: torch.Tensor, labels: Mapping[str, torch.Tensor], attributes, layout: Layout,
                generator: torch.Generator | None = None, parts: dict | None = None) -> dict[str, torch.Tensor]:
    """Eq. (7) for every attribute the batch has labels for: {name: weight * F_k(f_k, y_k)}. ``parts``, when
    given, receives the weighted, detached parts of losses that return them (``"<attribute>.<part>"``)."""
    layout_parts = layout.split(f)
    out = {}
    for a in attributes:
        if a.has_labels(labels):
            loss = _attribute_loss(a, layout_parts[a.name], labels, generator, parts)
            if loss is not None:
                out[a.name] = loss
    return out


def augmentation_losses(f_cycled: torch.Tensor, perms: torch.Tensor, names: Sequence[str], labels, attributes,
                        layout: Layout, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Eq. (10): the task loss of attribute k on the re-encoded images whose k-th sub-vector was shuffled,
    against the labels shuffled the same way (only for attributes the batch labels). ``perms`` (len(names), m)
    holds the rows each edited sub-vector came from, as ``shuffle_attributes`` returns them."""
    B = perms.shape[1]
    out = {}
    by_name = {a.name: a for a in attributes}
    for i, name in enumerate(names):
        a = by_name.get(name)
        if a is None or not a.has_labels(labels):
            continue
        f_k = layout.split(f_cycled[i * B : (i + 1) * B])[name]
        shuffled = {key: value[perms[i].to(value.device)] for key, value in labels.items()}
        loss = _attribute_loss(a, f_k, shuffled, generator)
        if loss is not None:
            out[name] = loss
    return out
