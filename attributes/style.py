"""Style: what is neither pose, identity nor expression, learnt from video clips."""

from __future__ import annotations

from typing import Mapping

import attrs
import torch

from fsx.attributes.base import Attribute, Label, Probe, SamplerSpec
from fsx.attributes.contrastive import contrastive_loss
from fsx.attributes.triplet import MINING, pick_negative, pick_random, triplet_loss


@attrs.frozen
class ClipTriplet:
    """Anchor and positive from the same video clip; the negative from another clip of the *same person*, so
    that identity cannot explain the difference, only style can (the sensible reading of Sec. 3.7.1). The
    negative is random (the paper) or semi-hard (``mining``, see ``pick_negative``)."""

    margin: float = 0.2
    normalize: bool = True
    person: str = "person"
    clip: str = "clip"
    mining: str = attrs.field(default="random", validator=attrs.validators.in_(MINING))
    # "contrastive": every other frame of the same clip is a positive, every other clip a negative (see
    # contrastive.py); "triplet" is the paper's Eq. (12).
    objective: str = attrs.field(default="triplet", validator=attrs.validators.in_(("triplet", "contrastive")))
    temperature: float = 0.1

    def __call__(self, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator=None) -> torch.Tensor:
        person = labels[self.person].to(features.device)
        clip = labels[self.clip].to(features.device)
        same_person = person[:, None] == person[None, :]
        same_clip = (clip[:, None] == clip[None, :]) & same_person
        if self.objective == "contrastive":
            return contrastive_loss(features, same_clip.float(), self.temperature)
        eye = torch.eye(len(clip), dtype=torch.bool, device=features.device)
        pos, has_pos = pick_random(same_clip & ~eye, generator)
        neg, has_neg = pick_negative(features, pos, same_person & ~same_clip, self.mining, self.margin, self.normalize,
                                     generator)
        return triplet_loss(features, pos, neg, has_pos & has_neg, self.margin, self.normalize)


def style(margin: float = 0.2, weight: float = 1.0, persons_per_batch: int = 5, clips_per_person: int = 4,
          mining: str = "random", objective: str = "triplet", temperature: float = 0.1) -> Attribute:
    return Attribute(
        name="style",
        dim=32,
        labels=(Label("person", "group"), Label("clip", "group")),
        loss=ClipTriplet(margin=margin, mining=mining, objective=objective, temperature=temperature),
        sampler=SamplerSpec(group_by=("person", "clip"), counts=(persons_per_batch, clips_per_person)),
        probe=Probe("verification", "clip", within="person"),
        weight=weight,
        description="background, light, accessories: video-clip triplet, macro-batches of 5 persons x 4 clips",
        # contrastive at x1 takes E from expression; x0.3 keeps it
        presets={"demo": {"objective": "contrastive", "weight": 0.3}},
    )
