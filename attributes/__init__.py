"""Attributes: the contract (``Attribute``) and the built-in pose, identity, expression and style."""

from fsx.attributes.base import LABEL_KINDS, Attribute, AttributeLoss, Label, Probe, SamplerSpec
from fsx.attributes.expression import AFFECTNET_CATEGORIES, ExpressionTriplet, expression, expression_distance
from fsx.attributes.identity import IdentityTriplet, identity
from fsx.attributes.pose import PoseL1, pose
from fsx.attributes.style import ClipTriplet, style
from fsx.attributes.triplet import pick_random, triplet_loss

__all__ = [
    "AFFECTNET_CATEGORIES",
    "LABEL_KINDS",
    "Attribute",
    "AttributeLoss",
    "ClipTriplet",
    "ExpressionTriplet",
    "IdentityTriplet",
    "Label",
    "PoseL1",
    "Probe",
    "SamplerSpec",
    "expression",
    "expression_distance",
    "identity",
    "pick_random",
    "pose",
    "style",
    "triplet_loss",
]
