"""Identity: a triplet embedding with a random in-batch positive (same person) and negative (other person)."""

from __future__ import annotations

from typing import Mapping

import attrs
import torch

from fsx.attributes.base import Attribute, Probe, SamplerSpec
from fsx.attributes.triplet import pick_random, triplet_loss


@attrs.frozen
class IdentityTriplet:
    """Eq. (12) with triplets formed inside the batch: for each sample a random image of the same person
    as positive and a random image of any other person as negative."""

    margin: float = 0.2
    normalize: bool = True
    label: str = "person"

    def __call__(self, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator=None) -> torch.Tensor:
        person = labels[self.label].to(features.device)
        same = person[:, None] == person[None, :]
        eye = torch.eye(len(person), dtype=torch.bool, device=features.device)
        pos, has_pos = pick_random(same & ~eye, generator)
        neg, has_neg = pick_random(~same, generator)
        return triplet_loss(features, pos, neg, has_pos & has_neg, self.margin, self.normalize)


def identity(margin: float = 0.2, weight: float = 1.0, persons_per_batch: int = 20) -> Attribute:
    return Attribute(
        name="identity",
        aliases=("id",),
        dim=32,
        labels=("person",),
        loss=IdentityTriplet(margin=margin),
        sampler=SamplerSpec(group_by=("person",), counts=(persons_per_batch,)),
        probe=Probe("verification", "person", across="clip"),
        weight=weight,
        description="who it is: triplet over persons (Eq. 12), macro-batches of 20 persons",
    )
