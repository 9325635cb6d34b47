"""Training configuration (a frozen attrs class) and the presets ``tiny``, ``demo``, ``paper`` and ``mad``."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
from attrs import validators as v

from fsx.config import NetworkConfig, from_fields
from fsx.data.synthfaces import CLIPS_PER_PERSON, FRAMES_PER_CLIP, PERSONS
from fsx.losses import RECONSTRUCTION_ERRORS
from fsx.perceptual import PERCEPTUAL_NETWORKS
from fsx.plugins import get_registry
from fsx.plugins.manager import UnknownAttributeError
from fsx.train.stages import STAGES


def _steps(value: Any) -> dict:
    value = dict(value)
    unknown = set(value) - set(STAGES)
    if unknown:
        raise ValueError(f"steps: unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
    return {s: int(value.get(s, 0)) for s in STAGES}


def _nested(cls, what: str):
    """Converter of a nested section: a dict (from JSON or a preset) -> ``cls``, naming unknown keys."""

    def convert(value):
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"training option {what!r} must be a mapping of {what}.* options, got {value!r}")
        return from_fields(cls, value, f"{what} option(s)")

    return attrs.field(factory=cls, converter=convert)


def _check_weights(section: str, obj, positive: tuple[str, ...] = ()) -> None:
    """Every number of a section finite and >= 0 (those in ``positive`` > 0): a negative weight would train the
    opposite of its term, and a NaN or Inf one would only fail steps later, far from the option that caused it."""
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        for x in (value if isinstance(value, tuple) else (value,)):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                continue
            if not math.isfinite(x) or x < 0 or (field.name in positive and x == 0):
                need = "a finite number > 0" if field.name in positive else "a finite number >= 0"
                raise ValueError(f"{section}.{field.name} must be {need}, got {value!r}")


@attrs.frozen
class OptimConfig:
    """Adam for E/G, the discriminators and Phi/Phi^-1 (Sec. 4.3), and how often each discriminator is updated."""

    lr_aae: float = 5e-5
    betas_aae: tuple[float, float] = attrs.field(default=(0.0, 0.999), converter=tuple)
    lr_phi: float = 1e-4
    betas_phi: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple)
    lr_disc_scale: float = 1.0  # D_x and D_z learning rate relative to lr_aae
    d_x_every: int = attrs.field(default=1, validator=v.ge(1))  # update D_x every n-th step
    d_z_every: int = attrs.field(default=1, validator=v.ge(1))
    # Stages that start with every optimiser's moments cleared (as a run started with --init does). The joint
    # stage's task losses give E gradients about a hundred times those of the aae stage; carried over, Adam's
    # second moment (an average over ~1/(1 - beta2) = 1,000 steps) still holds the small ones, so E's first joint
    # steps are up to ~10x the learning rate for hundreds of steps. Cleared, bias correction sizes them from step 1.
    reset_at: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # Stages whose learning rates fall on a half cosine from the rates above to zero over the stage's steps (the
    # other stages run at the rates above). At a constant rate a stage's last steps still move the weights by the
    # full step size, so a run that ends on its raw weights keeps their noise; a falling rate removes it, at the price
    # of what the stage's late steps would still learn (ema_half_life's weight average removes most of the noise
    # without that price: docs/experiments.md measures both).
    decay_at: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # E's and G's weights averaged over their last steps, the weight of a step halving every N steps (0: none);
    # the model takes the average when a stage that trains them ends (fsx.train.weight_average says why). The
    # judge's readings and grids during a stage show the raw weights, the stage's .safetensors the average.
    ema_half_life: int = attrs.field(default=0, validator=v.ge(0))

    def __attrs_post_init__(self):
        for name in ("reset_at", "decay_at"):
            unknown = [s for s in getattr(self, name) if s not in STAGES]
            if unknown:
                raise ValueError(f"optim.{name}: unknown stage(s) {unknown}; stages are {list(STAGES)}")
        _check_weights("optim", self, positive=("lr_aae", "lr_phi", "lr_disc_scale"))
        for name in ("betas_aae", "betas_phi"):
            betas = getattr(self, name)
            if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
                raise ValueError(f"optim.{name} must be two numbers in [0, 1), e.g. 0.5,0.999; got {betas!r}")


@attrs.frozen
class LossConfig:
    """The weights of Eq. (5) (the autoencoder) and Eq. (14) (the disentangler); 1 and 0 are the paper's values.
    Each attribute's own task weight is its option ``ATTRIBUTE.weight``."""

    lambda_ae: float = 0.9
    rec: float = 1.0  # factor on L_rec inside Eq. (5)
    # The pixel error of L_rec: "l1" (Eq. 1) or "squared". L1's gradient is the same size for every pixel, so an
    # eye's few badly wrong pixels pull no harder than the background's noise; the squared error pulls in
    # proportion to the error (docs/experiments.md: from the exact render parameters G draws eyes only with it).
    rec_error: str = attrs.field(default="l1", validator=v.in_(tuple(RECONSTRUCTION_ERRORS)))
    # Terms added to L_rec, each weighted relative to the pixel error (all 0 in the paper): 1 - SSIM, which pays
    # for local structure (an eye missing from a patch of skin) rather than for pixels; the pixel error of each
    # coarser output of a multi-scale generator (skip_generator's pyramid) against the downsampled picture, so
    # that coarse scales place the parts; and a perceptual distance in a fixed network (fsx.perceptual), the one
    # ``rec_perceptual_net`` names: a random-weight CNN, MTCNN's ONet (a face network: python -m fsx.onet converts
    # it once) or the FID Inception's first convolutions.
    rec_ssim: float = 0.0
    rec_scales: float = 0.0
    rec_perceptual: float = 0.0
    rec_perceptual_net: str = attrs.field(default="random", validator=v.in_(PERCEPTUAL_NETWORKS))
    image_gan: float = 1.0  # factor on L_adv and L_gen on the E/G side of Eq. (5)
    # Where the codes of L_gen's fakes G(z*) come from: "standard" draws z* from N(0, I), Eq. (5) as written; "codes"
    # from a Gaussian with the mean and covariance of the batch's codes E(x) (without gradient). D_z pulls E's
    # codes towards the prior without getting them onto it, so prior fakes pay G for drawing where no face's code
    # is; "codes" spends L_gen where reconstructions, edits and fitted samples are drawn. D_z's prior samples stay
    # N(0, I) either way. (The same words as generate's ``prior``.)
    fake_codes: str = attrs.field(default="standard", validator=v.in_(("standard", "codes")))
    # Feature matching (not in the paper; VAE-GAN's learned similarity): weight of the L1 between D_x's
    # activations of each real picture and of its reconstruction, added to the E/G side of Eq. (5). Pixel L1 weighs
    # an eye or a mouth by its few pixels; D_x's features weigh what tells a reconstruction from its original.
    feature_match: float = attrs.field(default=0.0, validator=v.ge(0))
    # R1 penalty (Mescheder et al., 2018) on D_z: gamma/2 * E||grad D_z(z*)||^2 over prior samples.
    latent_r1: float = attrs.field(default=0.0, validator=v.ge(0))
    rec_phi: float = 1.0  # lambda of L_rec^Phi in Eq. (14)
    rec_phi_refit: float = attrs.field(default=300.0, validator=v.ge(0))  # L_rec^Phi weight in the refit stage
    task: float = 1.0
    cycle: float = 1.0
    aug: float = 1.0
    # Rows per attribute sent through the cycle G(Phi^-1(f*)) -> E -> Phi of Eq. (8)-(10); 0 = the whole batch
    # for every attribute (K x batch images through G and E per step, the costliest part of a step).
    cycle_samples: int = attrs.field(default=0, validator=v.ge(0))
    # Whether the cycle's generated images train E (Eq. 14 as written: yes). With False they train G, Phi and
    # Phi^-1 but not E, which then learns to read attributes from real faces alone: G must draw what E sees in
    # real faces instead of a code that E and G agree on between themselves (AttGAN's attribute classifier learns
    # from real images only for the same reason).
    cycle_trains_encoder: bool = True
    # Not in the paper: the task loss of every attribute on the re-encoded reconstruction, Phi(E(G(E(x)))) against
    # x's labels, in the joint stage, with E and Phi as fixed readers (their parameters take no gradient from it).
    # The cycle pays G for drawing the attributes of edited codes Phi^-1(f*), which joint training leaves apart
    # from E's codes; this pays it for drawing them in G(E(x)) itself, the picture every edit starts from.
    rec_task: float = 0.0
    # Not in the paper: Eq. (8)'s cycle on the unedited reconstruction, ||Phi(E(G(E(x)))) - Phi(E(x))||_1 in the
    # joint stage, E and Phi reading G's picture without learning from it and Phi(E(x)) a target without gradient.
    # rec_task pays G for what the labels hold (a person's group, a category); this pays it for what E read in
    # this very picture, such as the person's own identity rather than only belonging to the batch's group.
    rec_cycle: float = attrs.field(default=0.0, validator=v.ge(0))
    # Not in the paper: in the joint stage, the share of the gradient of every term on G(E(x)) (L_rec and its
    # added terms, the image GAN's, the reread terms) that passes through G into E; 1 is Eq. (14) as written. With
    # a heavier ``rec``, a share below 1 pays G more for the pixels while E's gradient from them stays the size it
    # was (docs/experiments.md measures it: that alone does not keep the expression task's early start).
    encoder_share: float = attrs.field(default=1.0, validator=[v.ge(0), v.le(1)])
    # Not in the paper: L_rec's weight in the joint stage rises linearly from ``rec`` to ``rec_ramp`` x ``rec`` at
    # its last step (1: constant), starting at the fraction ``rec_ramp_start`` of the stage (0: its first step). A
    # heavier L_rec from the stage's start delays the expression task by hundreds of steps; ramped, and later still
    # with a start, the stage begins at the weight under which the task leaves its plateau (docs/experiments.md
    # measures each: they buy RMSE and identity and cost expression).
    rec_ramp: float = attrs.field(default=1.0, validator=v.gt(0))
    rec_ramp_start: float = attrs.field(default=0.0, validator=[v.ge(0), v.lt(1)])
    # Not in the paper, the decoder stage only: the share of each batch that G draws from the embedding's round
    # trip Phi^-1(Phi(E(x))) instead of from E(x) (every edit is drawn from Phi^-1 of some f, and Phi^-1 does not
    # return E's code exactly), and a factor on Eq. (8)-(10)'s cycle and augmentation terms there, which then pay G
    # alone for drawing edited codes so that the fixed E and Phi read the edit back.
    decoder_embedding: float = attrs.field(default=0.0, validator=[v.ge(0), v.le(1)])
    decoder_cycle: float = attrs.field(default=0.0, validator=v.ge(0))

    def __attrs_post_init__(self):
        _check_weights("loss", self)


@attrs.frozen
class SynthConfig:
    """The size of SynthFaces' train split when ``data`` uses it; ``persons`` 0 streams it instead (new persons
    every step, ``fsx.data.synthfaces.SynthStream``), ``clips`` and ``frames`` then per streamed person."""

    persons: int = attrs.field(default=PERSONS["train"], validator=v.or_(v.in_((0,)), v.ge(2)))
    clips: int = attrs.field(default=CLIPS_PER_PERSON, validator=v.ge(1))
    frames: int = attrs.field(default=FRAMES_PER_CLIP, validator=v.ge(1))


SECTIONS = {"model": NetworkConfig, "optim": OptimConfig, "loss": LossConfig, "synth": SynthConfig}


@attrs.frozen
class TrainConfig:
    """Everything a run needs; written to ``config.json`` in the run folder. ``model``, ``optim``, ``loss`` and
    ``synth`` are sections (``--set loss.rec=50`` on the command line)."""

    attributes: tuple[str, ...] = attrs.field(default=("pose", "identity", "expression", "style"), converter=tuple)
    attribute_options: dict = attrs.field(factory=dict)  # {"identity": {"margin": 0.3}, ...}
    data: str = "synthfaces"
    synth: SynthConfig = _nested(SynthConfig, "synth")
    preset: str = "demo"
    stage: str = attrs.field(default="all", validator=v.in_(("all",) + STAGES))
    steps: dict = attrs.field(factory=lambda: {"aae": 1000, "disentangle": 500, "joint": 200}, converter=_steps)
    batch_size: int = attrs.field(default=64, validator=v.ge(2))
    model: NetworkConfig = _nested(NetworkConfig, "model")
    optim: OptimConfig = _nested(OptimConfig, "optim")
    loss: LossConfig = _nested(LossConfig, "loss")
    mirror_p: float = attrs.field(default=0.5, validator=[v.ge(0), v.le(1)])  # horizontal flips
    # bookkeeping
    seed: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0), v.lt(2**31)])  # torch's seeds
    device: str = attrs.field(default="auto", validator=v.in_(("auto", "cpu", "cuda")))
    # What the steps' forward passes compute in: "fp32", "bf16" (autocast; the weights stay fp32), or "auto": bf16
    # where the device computes it natively (fsx.train.setup.resolve_precision), fp32 elsewhere.
    precision: str = attrs.field(default="fp32", validator=v.in_(("fp32", "bf16", "auto")))
    log_every: int = attrs.field(default=10, validator=v.ge(1))
    sample_every: int = attrs.field(default=500, validator=v.ge(1))
    ckpt_every: int = attrs.field(default=200, validator=v.ge(1))
    # The SynthFaces judge reads G(E(x)) and the embedding's decode of 256 validation pictures every N steps (0:
    # never); only runs that train on SynthFaces have the judge's pictures (fsx.train.judging).
    judge_every: int = attrs.field(default=250, validator=v.ge(0))
    threads: int = 0  # torch CPU threads; 0 = torch's default
    workers: int = attrs.field(default=0, validator=v.ge(0))  # DataLoader worker processes; 0 = read in the loop

    def __attrs_post_init__(self):
        if all(self.steps[s] == 0 for s in self.stages):
            raise ValueError(f"steps: {'every stage' if self.stage == 'all' else 'stage ' + self.stage} has 0 steps, so "
                             f"nothing would be trained; give --steps N or STAGE=N")

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages to run: the one asked for, or every stage that has steps ("all")."""
        return tuple(s for s in STAGES if self.steps[s] > 0) if self.stage == "all" else (self.stage,)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From ``config.json`` or a checkpoint's metadata, including those written before the sections existed
        (see :func:`upgrade`)."""
        return from_fields(cls, upgrade(d), "training option(s)")


# Flat fields of fsx 0.1's TrainConfig -> their section and name now.
MOVED = {
    **{k: ("model", k) for k in ("image_size", "width", "latent_disc_hidden", "phi_hidden")},
    **{k: ("optim", k) for k in ("lr_aae", "betas_aae", "lr_phi", "betas_phi", "lr_disc_scale", "d_x_every",
                                  "d_z_every")},
    "lambda_ae": ("loss", "lambda_ae"), "rec_weight": ("loss", "rec"), "image_gan_weight": ("loss", "image_gan"),
    "latent_r1": ("loss", "latent_r1"), "lambda_rec_phi": ("loss", "rec_phi"),
    "lambda_rec_phi_refit": ("loss", "rec_phi_refit"), "task_weight": ("loss", "task"),
    "cycle_weight": ("loss", "cycle"), "aug_weight": ("loss", "aug"), "cycle_samples": ("loss", "cycle_samples"),
    "synth_persons": ("synth", "persons"), "synth_clips": ("synth", "clips"), "synth_frames": ("synth", "frames"),
}
# Fields fsx 0.1 had and no preset used, with the value that made them do nothing (a run that set them otherwise
# cannot be continued as it was).
REMOVED = {"latent_gan_weight": 1.0, "cycle_trains": ["phi_inv", "G", "E", "phi"]}
PHI_TERMS = ("rec_phi", "rec_phi_refit", "task", "cycle", "aug")  # what fsx 0.1's phi_weight multiplied


def upgrade(d: dict) -> dict:
    """A configuration written by fsx 0.1 (flat fields) -> today's sections; a current one is returned as it is.

    ``phi_weight`` (a factor on the whole Eq. 14) is folded into the five weights it multiplied; a removed field
    set to anything but its neutral value is an error that says what changed."""
    if not any(k in d for k in (*MOVED, *REMOVED, "phi_weight")):
        return d
    out = {k: v for k, v in d.items() if k not in MOVED and k not in REMOVED and k != "phi_weight"}
    for key, neutral in REMOVED.items():
        value = d.get(key, neutral)
        if (list(value) if isinstance(neutral, list) else value) != neutral:
            raise ValueError(f"training option {key!r} = {json.dumps(value)} was removed in fsx 0.2 (no preset used "
                             f"it; it now always is {json.dumps(neutral)}): this configuration cannot be run as it was")
    for key, (section, name) in MOVED.items():
        if key in d:
            out[section] = {**out.get(section, {}), name: d[key]}
    factor = d.get("phi_weight", 1.0)
    if factor != 1.0:
        loss = out.setdefault("loss", {})
        for name in PHI_TERMS:
            loss[name] = factor * loss.get(name, attrs.fields_dict(LossConfig)[name].default)
    return out


PRESETS: dict[str, dict] = {
    # Seconds on a CPU: for tests and smoke runs.
    "tiny": dict(
        model=dict(image_size=32, width=0.0625, latent_disc_hidden=64, phi_hidden=64), batch_size=16,
        steps={"aae": 4, "disentangle": 4, "joint": 2, "refit": 2}, synth=dict(persons=24, clips=4, frames=4),
        log_every=1, sample_every=1000, ckpt_every=2,
    ),
    # The default: a narrow network at 64 px that finishes --stage all in under 30 minutes on 2 CPU cores. Where
    # CPU time is short it departs from the paper: a faster Adam, L_rec x50 and the image GAN terms x0.1 so that
    # reconstructions form early; no disentangle stage before a long joint stage, because a short unsupervised AAE
    # does not encode pose or expression in z while joint training teaches E what the attributes need (Phi on the
    # frozen E gained nothing measurable there, and its minutes pay for G's coarse channels); the task
    # terms x5 and L_rec^Phi x10 so that they are not drowned by the AAE terms; the cycle on 10 rows per
    # attribute (half the cost of a joint step); an R1 penalty that keeps D_z from winning outright and E's
    # codes on the prior; and a refit stage in which Phi^-1 catches up with the final E. The attributes' own
    # demo options (weights, contrastive objectives) are declared with each attribute (``presets``).
    # Drawing: the skip generator (channels kept at the fine scales, and 128 at 4 and 8 px, where the face's parts are
    # placed), and E at twice the networks' width (the code E gives G, not G, limits what G redraws: from the exact
    # render parameters this G reconstructs far closer than from E's code), the squared pixel error (L1's equal-size
    # gradients leave an eye's few pixels unpaid; x150, the squared error's gradients being smaller) with the pixel
    # error of every coarser output, and a stream of new persons every step, so that G learns to draw faces rather than
    # its training persons; and in the joint stage the attributes' task losses on the re-encoded reconstruction
    # (rec_task), so that G is paid for drawing in G(E(x)) what E reads in real faces. The AAE's rate 1e-3: E leaves the
    # expression plateau (Phi's one direction for every face) several hundred joint steps sooner than at 5e-4; at 2e-3
    # D_x wins outright early in the joint stage and G stops drawing faces. Fresh Adam moments at the joint stage
    # (reset_at): E's carried second moments hold the aae stage's gradients, ~100x smaller than the task losses', and
    # would inflate its first joint steps; and E and G averaged over the last few dozen steps of each stage
    # (ema_half_life 25), which smooths the joint stage's GAN steps without lagging the expression that is still being
    # learnt at its end. After the joint and refit stages, G alone on the final, frozen E and Phi (the decoder stage):
    # through the joint stage G draws codes that move with E every step, and only E's last codes are the ones the
    # model is used with (after refit rather than before it, G's reread terms read through the final Phi).
    # And a perceptual term in MTCNN's ONet (x0.1 of the pixel error; python -m fsx.onet converts it once): a face
    # network's features are made to find eyes, nose and mouth corners, so a reconstruction is paid for the parts
    # the pixel error leaves as smudges; E also leaves the expression plateau sooner (~15% more time per aae step).
    # Its steps run in bf16 where the device computes bf16 natively ("auto"): the narrow networks' steps are bound by
    # memory traffic and small operations, which half-size activations shorten; fp32 on other CPUs, where autocast
    # would emulate bf16 and run slower than fp32.
    # docs/experiments.md has the measurements behind each choice.
    "demo": dict(
        model=dict(image_size=64, width=0.25, generator="skip_generator",
                   backbone_options={"generator": {"width": 0.125, "floor": 16, "coarse": 128},
                                     "encoder": {"width": 0.5}}),
        batch_size=40, synth=dict(persons=0), precision="auto",
        steps={"aae": 1000, "disentangle": 0, "joint": 1500, "refit": 600, "decoder": 600},
        optim=dict(lr_aae=1e-3, betas_aae=(0.5, 0.999), lr_phi=3e-4, reset_at=("joint",), ema_half_life=25),
        loss=dict(rec=150.0, rec_error="squared", rec_scales=1.0, rec_perceptual=0.1,
                  rec_perceptual_net="onet", rec_task=1.0, image_gan=0.1, latent_r1=10.0, task=5.0,
                  rec_phi=10.0, rec_phi_refit=300.0, cycle_samples=10),
        log_every=25, sample_every=500, ckpt_every=250,
    ),
    # Sec. 4 as written: ResNet18 at full width, 128 px, batch 128, Adam settings of Sec. 4.3.
    "paper": dict(
        model=dict(image_size=128, width=1.0), batch_size=128,
        steps={"aae": 235000, "disentangle": 11000, "joint": 11000}, log_every=50, sample_every=2000, ckpt_every=2000,
    ),
    # The choices of the authors' public code (github.com/browatbn2/MAD): 256 px; their decoder (``mad_generator``,
    # one residual block per stage) and a discriminator of half the width (their ndf 32); lr 2e-5 with D_x at half
    # and every 4th step, D_z every 2nd; L1 x 255 on the 0-1 scale (x 127.5 on fsx's -1..1 images, over Eq. 5's lambda_AE 0.9);
    # z-reconstruction x4 and the whole disentanglement x5 (so its terms x5 and L_rec^Phi x20); expression
    # triplet x2.
    "mad": dict(
        model=dict(image_size=256, width=1.0, generator="mad_generator",
                   backbone_options={"image_discriminator": {"width": 0.5}}),
        batch_size=128, steps={"aae": 235000, "disentangle": 11000, "joint": 11000},
        optim=dict(lr_aae=2e-5, lr_disc_scale=0.5, d_x_every=4, d_z_every=2),
        loss=dict(rec=127.5 / 0.9, rec_phi=20.0, task=5.0, cycle=5.0, aug=5.0),
        log_every=50, sample_every=2000, ckpt_every=2000,
    ),
}


def make_config(preset: str = "demo", **overrides) -> TrainConfig:
    """The preset's values with ``overrides`` on top (None values are ignored; a section such as
    ``loss={"rec": 3.0}`` changes only the options it names).

    Attribute options start from what each trained attribute declares for the preset (``Attribute.presets``:
    the demo's pose weight lives in ``attributes/pose.py``) and the caller's ``attribute_options`` merge into them
    per option: ``{"identity": {"margin": 0.3}}`` on the demo preset keeps its contrastive objective. Options for
    attributes not being trained are kept (and rejected by the trainer, which names them)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    user_options = overrides.pop("attribute_options", None) or {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in SECTIONS and isinstance(value, dict):
            values[key] = {**values.get(key, {}), **{k: x for k, x in value.items() if x is not None}}
        else:
            values[key] = value
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
