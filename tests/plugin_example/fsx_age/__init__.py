"""An fsx attribute plugin: apparent age in an 8-d sub-vector, trained by L1 regression on the label 'age'."""

import attrs

from fsx.attributes import Attribute, Probe
from fsx.plugins import hookimpl


@attrs.frozen
class AgeL1:
    """Regress age (years / 100) from the sub-vector's first dimension."""

    scale: float = 0.01

    def __call__(self, features, labels, generator=None):
        target = labels["age"].to(features) * self.scale
        return (features[:, 0] - target).abs().mean()


@hookimpl
def fsx_register_attributes():
    return [
        Attribute(
            name="age",
            dim=8,
            labels=("age",),
            loss=AgeL1(),
            probe=Probe("regression", "age", component_names=("age",)),
            description="apparent age, L1 regression",
        )
    ]
