"""An fsx attribute plugin: the direction the light comes from, (light_x, light_y), regressed into a 4-d sub-vector.

A regression attribute with a vector label; the suite trains it to a margin over the other sub-vectors."""

import attrs

from fsx.attributes import Attribute, Label, Probe
from fsx.plugins import hookimpl


@attrs.frozen
class LightL1:
    """The sub-vector's first two dimensions are the light direction, with an L1 loss."""

    def __call__(self, features, labels, generator=None):
        return (features[:, :2] - labels["light"].to(features)).abs().sum(dim=1).mean()


def mirror_light(labels):
    """A horizontally flipped face is lit from the other side: light_x changes sign. Without this, training's
    random flips would give one picture two opposite labels and light_x could not be learnt."""
    return {"light": labels["light"] * labels["light"].new_tensor([-1.0, 1.0])}


@hookimpl
def fsx_register_attributes():
    return [
        Attribute(
            name="light",
            dim=4,
            labels=(Label("light", "vector", columns=("light_x", "light_y")),),
            loss=LightL1(),
            probe=Probe("regression", "light", component_names=("x", "y")),
            mirror=mirror_light,
            description="light direction (x, y), L1 regression",
            # an L1 of values below 1 in one term: x20 under the demo preset, as pose, so the AAE terms in E do
            # not drown it
            presets={"demo": {"weight": 20.0}},
        )
    ]
