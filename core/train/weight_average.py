"""E's and G's weights averaged over a stage's last steps (``optim.ema_half_life``): the GAN terms keep the raw
weights moving from step to step, and the faces G draws move with them; StyleGAN's G_ema, here for E as well
since the model decodes G(E(x)). torch's ``AveragedModel`` keeps the average; this file says what is averaged,
how fast, and when the model takes it."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """An exponential moving average of E's and G's parameters whose weights halve every ``half_life`` steps
    (the first update copies them); their buffers (BatchNorm statistics) are the live ones."""

    def __init__(self, model, half_life: int):
        self.live = nn.ModuleDict({"E": model.aae.E, "G": model.aae.G})
        self.average = AveragedModel(self.live, multi_avg_fn=get_ema_multi_avg_fn(0.5 ** (1 / half_life)))

    @classmethod
    def for_stage(cls, model, stage, half_life: int) -> "WeightAverage | None":
        """The average for a stage that trains E or G, or None (no average asked for, or a stage that trains
        neither)."""
        if half_life <= 0 or not {"aae.E", "aae.G"} & set(stage.trains):
            return None
        return cls(model, half_life)

    def update(self) -> None:
        self.average.update_parameters(self.live)

    def apply(self) -> None:
        """The model takes the averaged weights."""
        self.live.load_state_dict(self.average.module.state_dict())

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
