"""An in-batch contrastive alternative to the triplet loss of Eq. (12): every pair of the batch teaches.

A triplet looks at one positive and one negative per anchor; once those are far enough apart the anchor
teaches nothing, and at the start, when all features are alike, its gradient is weak. Here each anchor i is
asked to predict, by a softmax over cosine similarities to all other samples of the batch, a target
distribution p_i over them that the attribute's labels define (the same person; for expression the closeness of
Eq. (13)). This is supervised contrastive learning (Khosla et al., 2020) with soft targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(features: torch.Tensor, target: torch.Tensor, temperature: float = 0.1,
                     exclude: torch.Tensor | None = None, center: bool = False) -> torch.Tensor:
    """Mean over anchors of the cross-entropy between target rows and softmax(cos(f_i, f_j) / temperature), j != i.

    features: (N, D); target: (N, N) non-negative weights (the diagonal is ignored; rows are normalised here);
    exclude: (N, N) bool, pairs left out of both target and softmax. Anchors whose row has no weight are left out;
    with none left the result is a graph-connected zero. ``center`` subtracts the batch mean before the cosine: a
    component common to all samples then cannot make every pair look alike (a collapsed start, where the
    loss sits at its uniform value with almost no gradient)."""
    n = features.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=features.device)
    if exclude is not None:
        eye = eye | exclude
    target = target.masked_fill(eye, 0.0)
    mass = target.sum(dim=1)
    keep = mass > 0
    if n < 2 or not bool(keep.any()):
        return features.sum() * 0.0
    f = features.float()
    f = F.normalize(f - f.mean(dim=0, keepdim=True) if center else f, dim=1)
    logits = (f @ f.T / temperature).masked_fill(eye, float("-inf"))
    log_q = logits.log_softmax(dim=1).masked_fill(eye, 0.0)
    p = target[keep] / mass[keep, None]
    return -(p * log_q[keep]).sum(dim=1).mean()
