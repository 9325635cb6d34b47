"""Expression: a triplet embedding ordered by the valence-arousal-category distance of Eq. (13)."""

from __future__ import annotations

from typing import Mapping

import attrs
import torch

from fsx.attributes.base import Attribute, Probe
from fsx.attributes.contrastive import contrastive_loss
from fsx.attributes.triplet import pick_random, triplet_loss

AFFECTNET_CATEGORIES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")


def expression_distance(va: torch.Tensor, category: torch.Tensor, lambda_l: float) -> torch.Tensor:
    """Eq. (13) between all pairs: ||(v, a)^i - (v, a)^j||^2 + lambda_l * [l^i != l^j].

    The paper writes the Kronecker delta (1 when the categories are equal); taken literally that pushes
    same-category faces apart, so fsx adds lambda_l when the categories *differ*, which is what the
    sentence around it intends. va: (N, 2); category: (N,). Returns (N, N).
    """
    d = torch.cdist(va, va).pow(2)
    return d + lambda_l * (category[:, None] != category[None, :]).to(d)


@attrs.frozen
class ExpressionTriplet:
    """For each sample, the closest other sample by Eq. (13) is the positive; the negative is drawn at random
    from ranks [k, n) of the others ordered by that distance. ``negative_rank`` is k; None means the far
    half of the batch. A sample whose drawn negative is no farther than its positive is skipped."""

    margin: float = 0.2
    normalize: bool = True
    lambda_l: float = 0.25
    negative_rank: int | None = None
    # "contrastive": instead of one triplet per sample, every other sample of the batch is a soft positive with
    # weight exp(-Eq. 13 distance / label_temperature) (see contrastive.py); "triplet" is the paper's Eq. (12).
    objective: str = attrs.field(default="triplet", validator=attrs.validators.in_(("triplet", "contrastive")))
    temperature: float = 0.1
    label_temperature: float = 0.1

    def __call__(self, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator=None) -> torch.Tensor:
        device = features.device
        va = torch.stack([labels["valence"], labels["arousal"]], dim=1).to(device=device, dtype=torch.float32)
        cat = labels["category"].to(device)
        n = len(cat)
        if n < 3:
            return features.sum() * 0.0
        dist = expression_distance(va, cat, self.lambda_l)
        if self.objective == "contrastive":
            return contrastive_loss(features, torch.exp(-dist / self.label_temperature), self.temperature)
        dist = dist.fill_diagonal_(float("inf"))  # a sample is never its own positive or negative
        order = dist.argsort(dim=1)  # (N, N); the sample itself is last
        others = n - 1
        k = others // 2 if self.negative_rank is None else min(int(self.negative_rank), others - 1)
        k = max(k, 1)
        positive = order[:, 0]
        ranks = torch.zeros(n, n, dtype=torch.bool, device=device)
        ranks[:, k:others] = True  # ranks [k, n-1) of the n-1 others
        pick, _ = pick_random(ranks, generator)
        negative = order.gather(1, pick[:, None]).squeeze(1)
        rows = torch.arange(n, device=device)
        valid = dist[rows, negative] > dist[rows, positive]
        return triplet_loss(features, positive, negative, valid, self.margin, self.normalize)


def expression(margin: float = 0.2, lambda_l: float = 0.25, weight: float = 1.0,
               objective: str = "triplet") -> Attribute:
    return Attribute(
        name="expression",
        aliases=("expr",),
        dim=32,
        labels=("valence", "arousal", "category"),
        loss=ExpressionTriplet(margin=margin, lambda_l=lambda_l, objective=objective),
        probe=Probe("classification", "category", class_names=AFFECTNET_CATEGORIES),
        weight=weight,
        description="facial expression: triplet by valence/arousal/category distance (Eq. 13)",
    )
