"""A training configuration from what a user types: the flags of ``fsx train``, ``--set SECTION.KEY=VALUE``,
``--option ATTR.KEY=VALUE`` and ``--steps``, resolved by one function that the CLI calls and tests call directly."""

from __future__ import annotations

import json
from typing import Iterable

import attrs

from fsx.train.config import SECTIONS, TrainConfig, make_config
from fsx.train.stages import STAGES

# Training options that have a flag of their own: ``--set`` names the flag instead of setting them a second way.
FLAGGED = {"attributes": "--attributes", "attribute_options": "--option", "data": "--data", "preset": "--preset",
           "stage": "--stage", "steps": "--steps", "batch_size": "--batch-size", "model.image_size": "--image-size",
           "model.width": "--width", "seed": "--seed", "device": "--device", "precision": "--precision",
           "log_every": "--log-every", "sample_every": "--sample-every", "ckpt_every": "--ckpt-every",
           "judge_every": "--judge-every", "threads": "--threads", "workers": "--workers"}


class OptionError(ValueError):
    """A value a user typed that names no setting or does not parse; ``flag`` is the flag it came with."""

    def __init__(self, message: str, flag: str | None = None):
        super().__init__(message)
        self.flag = flag


def _json_or_text(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_options(values: Iterable[str]) -> dict:
    """``identity.margin=0.3`` -> {"identity": {"margin": 0.3}} (values parsed as JSON when they are)."""
    out: dict = {}
    for item in values:
        key, eq, raw = item.partition("=")
        attr, dot, opt = key.partition(".")
        if not eq or not dot:
            raise OptionError(f"{item!r}: expected ATTRIBUTE.OPTION=VALUE, e.g. identity.margin=0.3")
        out.setdefault(attr, {})[opt] = _json_or_text(raw)
    return out


def parse_settings(values: Iterable[str]) -> dict:
    """``loss.rec_phi=20`` -> {"loss": {"rec_phi": 20}}: an option of a section of TrainConfig (model, optim, loss,
    synth) or a top-level field without a flag, the value parsed as JSON when it is JSON; for tuple fields a
    comma-separated list (``optim.betas_aae=0.5,0.999``)."""
    settable = {f.name: f for f in attrs.fields(TrainConfig) if f.name not in SECTIONS and f.name not in FLAGGED}
    settable.update({f"{section}.{f.name}": f for section, cls in SECTIONS.items() for f in attrs.fields(cls)
                     if f"{section}.{f.name}" not in FLAGGED})
    out: dict = {}
    for item in values:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise OptionError(f"{item!r}: expected KEY=VALUE, e.g. loss.rec_phi=20")
        if key in FLAGGED:
            raise OptionError(f"{key!r} has its own flag: use {FLAGGED[key]}")
        if key not in settable:
            raise OptionError(f"{key!r} is not a training option; --set takes: {', '.join(settable)}")
        value = _json_or_text(raw)
        if isinstance(value, str) and settable[key].converter is tuple:
            value = tuple(_json_or_text(part) for part in value.split(",") if part)
        section, dot, name = key.rpartition(".")
        if dot:
            out.setdefault(section, {})[name] = value
        else:
            out[name] = value
    return out


def parse_steps(raw: str | None, preset: str, stage: str) -> dict | None:
    """``--steps N`` (each stage ``--stage`` selects) or ``--steps aae=1000,joint=200`` -> every stage's steps."""
    if raw is None:
        return None
    out = dict(make_config(preset).steps)  # the preset's, before any stage is chosen
    selected = [s for s in STAGES if out[s] > 0] if stage == "all" else [stage]
    try:
        if "=" not in raw:
            out.update({s: int(raw) for s in selected})
        else:
            for item in raw.split(","):
                name, _, n = item.partition("=")
                if name.strip() not in STAGES:
                    raise OptionError(f"{name.strip()!r} is not a stage; stages are {', '.join(STAGES)}", "--steps")
                out[name.strip()] = int(n)
    except OptionError:
        raise
    except ValueError:
        raise OptionError(f"{raw!r}: expected a number of steps or STAGE=N,..., e.g. aae=1000,joint=200",
                          "--steps") from None
    if any(n < 0 for n in out.values()):
        raise OptionError(f"{raw!r}: steps cannot be negative", "--steps")
    return out


def config_from_options(attributes: Iterable[str], preset: str = "demo", steps: str | None = None,
                        options: Iterable[str] = (), settings: Iterable[str] = (), image_size: int | None = None,
                        width: float | None = None, **flags) -> TrainConfig:
    """The TrainConfig ``fsx train`` runs: the preset, then ``settings`` (``--set``), then the flags (``flags``:
    TrainConfig's own fields, e.g. ``data``, ``seed``, ``batch_size``; None leaves the preset's value).
    ``steps``, ``options`` and ``settings`` are the strings a user types; an OptionError names a bad one."""
    sections = parse_settings(settings)
    model = {**sections.pop("model", {}), "image_size": image_size, "width": width}
    return make_config(preset, model=model, attributes=tuple(attributes),
                       steps=parse_steps(steps, preset, flags.get("stage", "all")),
                       attribute_options=parse_options(options) or None, **flags, **sections)
