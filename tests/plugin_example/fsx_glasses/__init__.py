"""An fsx attribute plugin: whether a face wears glasses, in a 4-d sub-vector, trained on the 0/1 label 'glasses'."""

import attrs
import torch.nn.functional as F

from fsx.attributes import Attribute, Label, Probe
from fsx.plugins import hookimpl


@attrs.frozen
class GlassesLogistic:
    """The sub-vector's first dimension is the logit of 'wears glasses'."""

    def __call__(self, features, labels, generator=None):
        return F.binary_cross_entropy_with_logits(features[:, 0], labels["glasses"].to(features))


@hookimpl
def fsx_register_attributes():
    return [
        Attribute(
            name="glasses",
            dim=4,
            labels=(Label("glasses", "category"),),
            loss=GlassesLogistic(),
            probe=Probe("classification", "glasses", class_names=("none", "glasses")),
            description="glasses or not, logistic loss",
        )
    ]
