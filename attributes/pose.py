"""Pose: yaw, pitch, roll regressed directly into the 3-d sub-vector with an L1 loss (Eq. 11)."""

from __future__ import annotations

import math
from typing import Mapping

import attrs
import torch

from fsx.attributes.base import Attribute, Label, Probe


@attrs.frozen
class PoseL1:
    """F_p = ||y_p - f_p||_1, summed over (yaw, pitch, roll), averaged over the batch.

    Labels come in degrees; ``scale`` converts them to the units f_p is trained in (radians by default,
    so that the pose term is of the same order as the other L1 terms, which the paper chose L1 for).
    """

    label: str = "pose"
    scale: float = math.pi / 180.0

    def __call__(self, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator=None) -> torch.Tensor:
        target = labels[self.label].to(features) * self.scale  # (N, 3)
        return (features - target).abs().sum(dim=1).mean()


def mirror_pose(labels: Mapping[str, torch.Tensor]) -> dict:
    """A horizontally flipped face turns the other way and tilts the other way: yaw and roll change sign."""
    flipped = labels["pose"] * torch.tensor([-1.0, 1.0, -1.0], dtype=labels["pose"].dtype)
    return {"pose": flipped}


def pose(scale: float = math.pi / 180.0, weight: float = 1.0) -> Attribute:
    return Attribute(
        name="pose",
        dim=3,
        labels=(Label("pose", "vector", columns=("yaw", "pitch", "roll"), unit="degrees"),),
        loss=PoseL1(scale=scale),
        probe=Probe("regression", "pose", component_names=("yaw", "pitch", "roll"), unit="degrees"),
        weight=weight,
        mirror=mirror_pose,
        description="head pose (yaw, pitch, roll), L1 regression (Eq. 11)",
        # radians in one L1 term: x20 so that the AAE terms in E do not drown it (x10 left pitch at 3.9 deg)
        presets={"demo": {"weight": 20.0}},
    )
