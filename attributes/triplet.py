"""The triplet loss of Eq. (12) and the in-batch sampling of positives and negatives it needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pick_random(candidates: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of a boolean (N, N) candidate mask pick one column uniformly at random.

    Returns (index (N,), valid (N,)); ``valid`` is False for rows without any candidate.
    """
    scores = torch.rand(candidates.shape, generator=generator, device="cpu").to(candidates.device)
    scores = scores.masked_fill(~candidates, -1.0)
    return scores.argmax(dim=1), candidates.any(dim=1)


MINING = ("random", "semihard")


def pick_negative(features: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor, mining: str,
                  margin: float, normalize: bool, generator: torch.Generator | None = None):
    """A negative for each anchor among the (N, N) ``candidates``: "random" (the paper's choice for identity and
    style), or "semihard" (FaceNet, Schroff et al. 2015): a random candidate farther from the anchor than its
    positive but within the margin, the triplets that still teach something once random ones are all satisfied;
    rows without one keep a random candidate.

    Returns (index (N,), valid (N,)) like ``pick_random``."""
    if mining not in MINING:
        raise ValueError(f"triplet mining must be one of {MINING}, not {mining!r}")
    neg, valid = pick_random(candidates, generator)
    if mining == "random":
        return neg, valid
    with torch.no_grad():
        f = F.normalize(features, dim=1) if normalize else features
        d = torch.cdist(f, f).pow(2)  # (N, N)
        d_pos = d.gather(1, positive[:, None])
        semi = candidates & (d > d_pos) & (d < d_pos + margin)
    hard, has_hard = pick_random(semi, generator)
    return torch.where(has_hard, hard, neg), valid


def triplet_loss(
    features: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    valid: torch.Tensor,
    margin: float,
    normalize: bool,
) -> torch.Tensor:
    """Mean of max(0, ||f - f+||^2 - ||f - f-||^2 + margin) over the valid anchors (Eq. 12).

    features: (N, D); positive, negative: (N,) indices into the batch; valid: (N,) bool.
    An empty selection gives a graph-connected zero.
    """
    f = F.normalize(features, dim=1) if normalize else features
    d_pos = (f - f[positive]).pow(2).sum(dim=1)
    d_neg = (f - f[negative]).pow(2).sum(dim=1)
    per_sample = torch.relu(d_pos - d_neg + margin)
    if not bool(valid.any()):
        return features.sum() * 0.0
    return per_sample[valid].mean()
