"""Expression: a triplet embedding ordered by the valence-arousal-category distance of Eq. (13)."""

from __future__ import annotations

import functools
from typing import Mapping

import attrs
import torch
import torch.nn.functional as F

from fsx.attributes.base import Attribute, Label, Probe
from fsx.attributes.contrastive import contrastive_loss
from fsx.attributes.triplet import pick_random, triplet_loss
# AffectNet's eight categories, in its label order; SynthFaces renders the same eight.
AFFECTNET_CATEGORIES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")


def expression_distance(va: torch.Tensor, category: torch.Tensor, lambda_l: float) -> torch.Tensor:
    """Eq. (13) between all pairs: ||(v, a)^i - (v, a)^j||^2 + lambda_l * [l^i != l^j].

    The paper writes the Kronecker delta (1 when the categories are equal); taken literally that pushes
    same-category faces apart, so fsx adds lambda_l when the categories *differ*, which is what the
    sentence around it intends. va: (N, 2); category: (N,). Returns (N, N).
    """
    d = torch.cdist(va, va).pow(2)
    return d + lambda_l * (category[:, None] != category[None, :]).to(d)


@functools.lru_cache(maxsize=None)
def category_prototypes(n: int, dim: int) -> torch.Tensor:
    """n orthonormal rows in R^dim (n <= dim), the same on every machine and run: QR of a seeded Gaussian, made once
    per shape (the loss runs several times a training step). Callers must not modify it in place."""
    if n > dim:
        raise ValueError(f"expression: {n} category prototypes need a sub-vector of at least {n} dimensions, "
                         f"got {dim}")
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(dim, n, generator=g, dtype=torch.float64))
    return q.T.float()


@attrs.frozen
class ExpressionTriplet:
    """For each sample, the closest other sample by Eq. (13) is the positive; the negative is drawn at random
    from ranks [k, n) of the others ordered by that distance. ``negative_rank`` is k; None means the far
    half of the candidates. A sample whose drawn negative is no farther than its positive is skipped. Samples of
    the same person are not candidates (``ignore_same``)."""

    margin: float = 0.2
    normalize: bool = True
    lambda_l: float = 0.25
    negative_rank: int | None = None
    # "contrastive": instead of one triplet per sample, every other sample of the batch is a soft positive with
    # weight exp(-Eq. 13 distance / label_temperature) (see contrastive.py); "triplet" is the paper's Eq. (12).
    objective: str = attrs.field(default="triplet", validator=attrs.validators.in_(("triplet", "contrastive")))
    temperature: float = 0.1
    label_temperature: float = 0.1
    # Pairs sharing this label, when the batch has it, are neither positive nor negative. The paper's AffectNet
    # has one image per person; in video data (SynthFaces clips, VoxCeleb) a person's frames share their
    # expression, and the closest sample by Eq. (13) is then mostly the same person's other frame, which identity
    # alone can match (on the demo, contrastive, x1: loss 3.5 -> 2.2 with such pairs while the held-out AUC stayed
    # 0.62; without them 0.66).
    ignore_same: str | None = "person"
    center: bool = False  # contrastive only: subtract the batch mean first (see contrastive_loss)
    # Beyond the paper: + va_weight * L1 between the first two dimensions and (valence, arousal). Either ranking
    # objective is best satisfied by identical features while E does not yet encode expression (random targets
    # are best met by a uniform guess), and identical features send E no gradient: on the demo the contrastive
    # loss sat at its uniform value for 650 of 1,500 joint steps in one run and all of them in another. A
    # regression, like pose's L1, pulls E towards expression from the first step.
    va_weight: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    # Beyond the paper: + prototype_weight * the cross-entropy of the category against softmax(cos(f, p_c) /
    # temperature), p_c fixed orthonormal vectors (``category_prototypes``). Unlike the ranking objectives, a
    # classifier's gradient does not vanish on identical features: each face is pulled towards its own category's
    # vector from the first step, in the same cosine geometry the contrastive loss reads.
    prototype_weight: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    # The prototype term only in the joint stage's first N steps (0: in every step of every stage). The plateau is
    # where training starts; once E encodes expression the ranking loss's gradient no longer vanishes, and a term
    # that lasts keeps pulling every face of a category towards one vector.
    prototype_steps: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)])

    def at(self, stage: str, step: int) -> "ExpressionTriplet":
        """This loss at ``step`` of ``stage``: without the prototype term outside its steps (see ``prototype_steps``)."""
        if self.prototype_weight and self.prototype_steps and not (stage == "joint" and step < self.prototype_steps):
            return attrs.evolve(self, prototype_weight=0.0)
        return self

    def __call__(self, features: torch.Tensor, labels: Mapping[str, torch.Tensor],
                 generator=None) -> torch.Tensor | dict[str, torch.Tensor]:
        """The ranking objective's loss; with ``va_weight`` or ``prototype_weight`` set, its parts
        ``{objective: ..., "va": ..., "prototype": ...}``, whose sum is the loss (training logs each)."""
        device = features.device
        va = torch.stack([labels["valence"], labels["arousal"]], dim=1).to(device=device, dtype=torch.float32)
        cat = labels["category"].to(device)
        extra = {}
        if self.va_weight:
            extra["va"] = self.va_weight * (features[:, :2].float() - va).abs().sum(dim=1).mean()
        if self.prototype_weight:
            protos = category_prototypes(len(AFFECTNET_CATEGORIES), features.shape[1]).to(device)
            logits = F.normalize(features.float(), dim=1) @ protos.T / self.temperature
            extra["prototype"] = self.prototype_weight * F.cross_entropy(logits, cat.long())
        ranking = self._ranking(features, va, cat, labels, generator)
        return {self.objective: ranking, **extra} if extra else ranking

    def _ranking(self, features: torch.Tensor, va: torch.Tensor, cat: torch.Tensor,
                 labels: Mapping[str, torch.Tensor], generator) -> torch.Tensor:
        """Eq. (12)'s triplet or the in-batch contrastive loss, ordered by Eq. (13)."""
        device, n = features.device, len(cat)
        if n < 3:
            return features.sum() * 0.0
        dist = expression_distance(va, cat, self.lambda_l)
        excluded = torch.eye(n, dtype=torch.bool, device=device)  # a sample is never its own positive or negative
        if self.ignore_same is not None and self.ignore_same in labels:
            group = labels[self.ignore_same].to(device)
            excluded = excluded | (group[:, None] == group[None, :])
        if self.objective == "contrastive":
            return contrastive_loss(features, torch.exp(-dist / self.label_temperature), self.temperature, excluded,
                                    center=self.center)
        dist = dist.masked_fill(excluded, float("inf"))
        order = dist.argsort(dim=1)  # (N, N); the excluded samples last
        others = (~excluded).sum(dim=1)  # (N,) candidates per sample
        k = others // 2 if self.negative_rank is None else others.sub(1).clamp(max=int(self.negative_rank))
        k = k.clamp(min=1)
        positive = order[:, 0]
        rank = torch.arange(n, device=device)[None, :]
        ranks = (rank >= k[:, None]) & (rank < others[:, None])  # ranks [k, others) of each sample's candidates
        pick, _ = pick_random(ranks, generator)
        negative = order.gather(1, pick[:, None]).squeeze(1)
        rows = torch.arange(n, device=device)
        valid = (dist[rows, negative] > dist[rows, positive]) & (others >= 2)
        return triplet_loss(features, positive, negative, valid, self.margin, self.normalize)


def expression(margin: float = 0.2, lambda_l: float = 0.25, weight: float = 1.0,
               objective: str = "triplet") -> Attribute:
    return Attribute(
        name="expression",
        aliases=("expr",),
        dim=32,
        labels=(Label("valence", unit="[-1, 1]"), Label("arousal", unit="[-1, 1]"),
                Label("category", "category", unit="AffectNet class 0-7")),
        loss=ExpressionTriplet(margin=margin, lambda_l=lambda_l, objective=objective),
        probe=Probe("classification", "category", class_names=AFFECTNET_CATEGORIES),
        weight=weight,
        description="facial expression: triplet by valence/arousal/category distance (Eq. 13)",
        # demo: contrastive at x10 (mean AUC 0.66 at x1); mad: the authors' code weights the expression triplet x2
        presets={"demo": {"objective": "contrastive", "weight": 10.0}, "mad": {"weight": 2.0}},
    )
