"""Identity: a triplet embedding with a random in-batch positive (same person) and negative (other person)."""

from __future__ import annotations

from typing import Mapping

import attrs
import torch

from fsx.attributes.base import Attribute, Label, Probe, SamplerSpec
from fsx.attributes.contrastive import contrastive_loss
from fsx.attributes.triplet import MINING, pick_negative, pick_random, triplet_loss


@attrs.frozen
class IdentityTriplet:
    """Eq. (12) with triplets formed inside the batch: for each sample a random image of the same person
    as positive and an image of any other person as negative, at random (the paper) or semi-hard (``mining``, see
    ``pick_negative``)."""

    margin: float = 0.2
    normalize: bool = True
    label: str = "person"
    mining: str = attrs.field(default="random", validator=attrs.validators.in_(MINING))
    # "contrastive": every image of the same person in the batch is a positive, all others negatives (see
    # contrastive.py); "triplet" is the paper's Eq. (12).
    objective: str = attrs.field(default="triplet", validator=attrs.validators.in_(("triplet", "contrastive")))
    temperature: float = 0.1

    def __call__(self, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator=None) -> torch.Tensor:
        person = labels[self.label].to(features.device)
        same = person[:, None] == person[None, :]
        if self.objective == "contrastive":
            return contrastive_loss(features, same.float(), self.temperature)
        eye = torch.eye(len(person), dtype=torch.bool, device=features.device)
        pos, has_pos = pick_random(same & ~eye, generator)
        neg, has_neg = pick_negative(features, pos, ~same, self.mining, self.margin, self.normalize, generator)
        return triplet_loss(features, pos, neg, has_pos & has_neg, self.margin, self.normalize)


def identity(margin: float = 0.2, weight: float = 1.0, persons_per_batch: int = 20, mining: str = "random",
             objective: str = "triplet", temperature: float = 0.1) -> Attribute:
    return Attribute(
        name="identity",
        aliases=("id",),
        dim=32,
        labels=(Label("person", "group"),),
        loss=IdentityTriplet(margin=margin, mining=mining, objective=objective, temperature=temperature),
        sampler=SamplerSpec(group_by=("person",), counts=(persons_per_batch,)),
        probe=Probe("verification", "person", across="clip"),
        weight=weight,
        description="who it is: triplet over persons (Eq. 12), macro-batches of 20 persons",
        # a random triplet is satisfied early and then teaches little in a short run
        presets={"demo": {"objective": "contrastive"}},
    )
