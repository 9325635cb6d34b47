"""Training configuration (a frozen attrs class) and the presets ``tiny``, ``demo``, ``paper`` and ``mad``."""

from __future__ import annotations

import json
from typing import Any

import attrs
from attrs import validators as v

from fsx.backbones.registry import SUPPORTED_SIZES
from fsx.config import from_fields
from fsx.data.synthfaces import CLIPS_PER_PERSON, FRAMES_PER_CLIP, PERSONS

# aae, disentangle and joint are the paper's Sec. 3.1, 3.2-3.7 and 3.8. refit (not in the paper) trains Phi and
# Phi^-1 once more on the final, frozen E: joint training keeps moving E, Phi^-1 lags behind it, and G then
# decodes G(Phi^-1(f)) far from G(E(x)) (measured on the demo: embedding RMSE 67 vs 34 for G(E(x))).
STAGES = ("aae", "disentangle", "joint", "refit")
CYCLE_NETWORKS = ("phi_inv", "G", "E", "phi")


def _steps(value: Any) -> dict:
    value = dict(value)
    unknown = set(value) - set(STAGES)
    if unknown:
        raise ValueError(f"steps: unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
    return {s: int(value.get(s, 0)) for s in STAGES}


def _cycle_networks(instance, attribute, value: tuple) -> None:
    unknown = [n for n in value if n not in CYCLE_NETWORKS]
    if unknown:
        raise ValueError(f"cycle_trains: unknown network(s) {unknown}; the cycle's networks are {CYCLE_NETWORKS}")


@attrs.frozen
class TrainConfig:
    """Everything a run needs; written to ``config.json`` in the run folder."""

    attributes: tuple[str, ...] = attrs.field(default=("pose", "identity", "expression", "style"), converter=tuple)
    data: str = "synthfaces"
    preset: str = "demo"
    stage: str = attrs.field(default="all", validator=v.in_(("all",) + STAGES))
    steps: dict = attrs.field(factory=lambda: {"aae": 1000, "disentangle": 500, "joint": 200}, converter=_steps)
    batch_size: int = attrs.field(default=64, validator=v.ge(2))
    image_size: int = attrs.field(default=64, validator=v.in_(SUPPORTED_SIZES))
    width: float = attrs.field(default=0.25, converter=float, validator=v.gt(0))
    latent_disc_hidden: int = 1000
    phi_hidden: int = 1000
    # Sec. 4.3 and Eq. (5), (14)
    lr_aae: float = 5e-5
    betas_aae: tuple[float, float] = attrs.field(default=(0.0, 0.999), converter=tuple)
    lr_phi: float = 1e-4
    betas_phi: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple)
    lr_disc_scale: float = 1.0  # D_x and D_z learning rate relative to lr_aae
    lambda_ae: float = 0.9
    rec_weight: float = 1.0  # extra factor on L_rec inside Eq. (5) (1 = the paper)
    image_gan_weight: float = 1.0  # factor on L_adv and L_gen on the E/G side of Eq. (5) (1 = the paper)
    latent_gan_weight: float = 1.0  # factor on L_enc on the E side of Eq. (5) (1 = the paper)
    # R1 penalty (Mescheder et al., 2018) on D_z: gamma/2 * E||grad D_z(z*)||^2 over prior samples (0 = the paper).
    latent_r1: float = attrs.field(default=0.0, validator=v.ge(0))
    lambda_rec_phi: float = 1.0
    lambda_rec_phi_refit: float = attrs.field(default=300.0, validator=v.ge(0))  # L_rec^Phi weight in the refit stage
    task_weight: float = 1.0
    cycle_weight: float = 1.0
    aug_weight: float = 1.0
    phi_weight: float = 1.0  # factor on the whole Eq. (14) (the authors' code uses 5)
    # Rows per attribute sent through the cycle G(Phi^-1(f*)) -> E -> Phi of Eq. (8)-(10); 0 = the whole batch
    # for every attribute (K x batch images through G and E per step, the costliest part of a step).
    cycle_samples: int = attrs.field(default=0, validator=v.ge(0))
    # The networks inside the cycle f* -> Phi^-1 -> G -> E -> Phi that the cycle and augmentation terms of
    # Eq. (8)-(10) train (all four: Eq. 14 as written; G and E only in the joint stage). A network left out is
    # used with its weights held constant: gradients pass through it to f* but do not change it.
    cycle_trains: tuple[str, ...] = attrs.field(default=CYCLE_NETWORKS, converter=tuple, validator=_cycle_networks)
    d_x_every: int = attrs.field(default=1, validator=v.ge(1))  # update D_x every n-th step
    d_z_every: int = attrs.field(default=1, validator=v.ge(1))
    mirror_p: float = attrs.field(default=0.5, validator=[v.ge(0), v.le(1)])
    attribute_options: dict = attrs.field(factory=dict)  # {"identity": {"margin": 0.3}, ...}
    # SynthFaces size (train split)
    synth_persons: int = PERSONS["train"]
    synth_clips: int = CLIPS_PER_PERSON
    synth_frames: int = FRAMES_PER_CLIP
    # bookkeeping
    seed: int = 0
    device: str = attrs.field(default="auto", validator=v.in_(("auto", "cpu", "cuda")))
    precision: str = attrs.field(default="fp32", validator=v.in_(("fp32", "bf16")))
    log_every: int = attrs.field(default=10, validator=v.ge(1))
    sample_every: int = attrs.field(default=500, validator=v.ge(1))
    ckpt_every: int = attrs.field(default=200, validator=v.ge(1))
    threads: int = 0  # torch CPU threads; 0 = torch's default

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages to run: the one asked for, or every stage that has steps ("all")."""
        return tuple(s for s in STAGES if self.steps[s] > 0) if self.stage == "all" else (self.stage,)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_fields(cls, d, "training option(s)")


PRESETS: dict[str, dict] = {
    # Seconds on a CPU: for tests and smoke runs.
    "tiny": dict(
        image_size=32, width=0.0625, batch_size=16, latent_disc_hidden=64, phi_hidden=64,
        steps={"aae": 4, "disentangle": 4, "joint": 2, "refit": 2}, synth_persons=24, synth_clips=4, synth_frames=4,
        log_every=1, sample_every=1000, ckpt_every=2,
    ),
    # The default: a narrow network at 64 px that finishes --stage all in under 30 minutes on 2 CPU cores. Where
    # CPU time is short it departs from the paper: a faster Adam, L_rec x50 and the image GAN terms x0.1 so that
    # reconstructions form early; a short disentangle and a long joint stage, because a short unsupervised AAE
    # does not encode pose or expression in z while joint training teaches E what the attributes need; the task
    # terms x5 and L_rec^Phi x10 so that they are not drowned by the AAE terms; the cycle on 10 rows per
    # attribute (half the cost of a joint step); an R1 penalty that keeps D_z from winning outright and E's
    # codes on the prior; and a refit stage in which Phi^-1 catches up with the final E. The attributes' own
    # demo options (weights, contrastive objectives) are declared with each attribute (``presets``).
    # docs/experiments.md has the measurements behind each choice.
    "demo": dict(
        image_size=64, width=0.25, batch_size=40, latent_disc_hidden=1000, phi_hidden=1000,
        steps={"aae": 1000, "disentangle": 150, "joint": 1500, "refit": 600}, lr_aae=5e-4, betas_aae=(0.5, 0.999),
        rec_weight=50.0, image_gan_weight=0.1, latent_r1=10.0, lr_phi=3e-4, task_weight=5.0, lambda_rec_phi=10.0,
        lambda_rec_phi_refit=300.0, cycle_samples=10,
        log_every=25, sample_every=500, ckpt_every=250,
    ),
    # Sec. 4 as written: ResNet18 at full width, 128 px, batch 128, Adam settings of Sec. 4.3.
    "paper": dict(
        image_size=128, width=1.0, batch_size=128, latent_disc_hidden=1000, phi_hidden=1000,
        steps={"aae": 235000, "disentangle": 11000, "joint": 11000}, log_every=50, sample_every=2000, ckpt_every=2000,
    ),
    # The choices of the authors' public code (github.com/browatbn2/MAD): 256 px, lr 2e-5 with D_x at half and every 4th step,
    # D_z every 2nd step, z-reconstruction x4, whole disentanglement x5, expression triplet x2.
    "mad": dict(
        image_size=256, width=1.0, batch_size=128, latent_disc_hidden=1000, phi_hidden=1000,
        steps={"aae": 235000, "disentangle": 11000, "joint": 11000}, lr_aae=2e-5, lr_disc_scale=0.5,
        d_x_every=4, d_z_every=2, lambda_rec_phi=4.0, phi_weight=5.0,
        log_every=50, sample_every=2000, ckpt_every=2000,
    ),
}


def make_config(preset: str = "demo", **overrides) -> TrainConfig:
    """The preset's values with ``overrides`` on top (None values are ignored).

    Attribute options start from what each trained attribute declares for the preset (``Attribute.presets``:
    the demo's pose weight lives in ``attributes/pose.py``) and the caller's ``attribute_options`` merge into them
    per option: ``{"identity": {"margin": 0.3}}`` on the demo preset keeps its contrastive objective. Options for
    attributes not being trained are kept (and rejected by the trainer, which names them)."""
    from fsx.plugins import get_registry
    from fsx.plugins.manager import UnknownAttributeError

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    user_options = overrides.pop("attribute_options", None) or {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    registry = get_registry()
    merged: dict = {}
    for name in values.get("attributes", TrainConfig.__attrs_attrs__.attributes.default):
        try:
            attribute = registry.get(name)
        except UnknownAttributeError:  # the trainer reports it, with the known names
            continue
        if attribute.presets.get(preset):
            merged[attribute.name] = dict(attribute.presets[preset])
    for name, opts in user_options.items():
        merged.setdefault(registry.canonical(name), {}).update(opts)
    values["attribute_options"] = merged
    return TrainConfig.from_dict(values)
