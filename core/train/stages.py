"""The training stages as data, in the manner of stylegan2-ada's phases: which networks each stage trains, which
it holds fixed (eval mode: fixed BatchNorm statistics, no gradients), the optimisers that own each network and
their learning rates at each step.
The trainer and ``bench/train_step.py`` both build their optimisers and set their modes from here."""

from __future__ import annotations

import math

import attrs
import torch

# Each optimiser and the networks (paths inside FaceModel) whose parameters it updates.
OPTIMIZED = {"eg": ("aae.E", "aae.G"), "d": ("aae.D_z", "aae.D_x"), "phi": ("disentangler",)}


@attrs.frozen
class Stage:
    name: str
    trains: tuple[str, ...]  # networks given gradients on the stage's steps (D_z and D_x switch on for their update)
    fixed: tuple[str, ...] = ()  # networks in eval mode for the whole stage
    doc: str = ""


# aae, disentangle and joint are the paper's Sec. 3.1, 3.2-3.7 and 3.8. refit and decoder are not in the paper.
# refit trains Phi and Phi^-1 once more on the final E: joint training keeps moving E, Phi^-1 lags behind it, and G
# would then decode G(Phi^-1(f)) far from G(E(x)). decoder then trains G alone on that final E and Phi: through the
# joint stage G learns to draw codes that keep moving with E, and E's last codes are the ones the model is used
# with; coming after refit, its reread terms and every judge of G read through the Phi the model ships with.
STAGE_TABLE = {
    "aae": Stage("aae", ("aae.E", "aae.G"), doc="the adversarial autoencoder alone (Sec. 3.1)"),
    "disentangle": Stage("disentangle", ("disentangler",), ("aae",), doc="Phi and Phi^-1 on a fixed E (Sec. 3.2-3.7)"),
    "joint": Stage("joint", ("aae.E", "aae.G", "disentangler"), doc="everything together (Sec. 3.8)"),
    "refit": Stage("refit", ("disentangler",), ("aae",),
                   doc="disentangle again on the final E with a heavier L_rec^Phi (not in the paper)"),
    "decoder": Stage("decoder", ("aae.G",), ("aae.E", "disentangler"),
                     doc="G alone on the final, fixed E and Phi: Eq. (5)'s G side and the reread terms (not in the paper)"),
}
STAGES = tuple(STAGE_TABLE)  # in the order a run goes through them; ``Steps`` has one method of each name


def set_requires_grad(modules, flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def enter_stage(model, stage: Stage) -> None:
    """Train mode, gradients on exactly for the networks the stage trains, its fixed networks in eval mode."""
    model.train()
    set_requires_grad([model], False)
    for path in stage.fixed:
        model.get_submodule(path).eval()
    set_requires_grad([model.get_submodule(p) for p in stage.trains], True)


def learning_rates(cfg, stage: str | None = None, step: int = 0) -> dict[str, float]:
    """Each optimiser's learning rate at ``step`` of ``stage``: Adam's rates of Sec. 4.3 (the discriminators at
    ``lr_disc_scale``), on a half cosine to zero over a stage named in ``optim.decay_at``."""
    o = cfg.optim
    factor = 1.0
    if stage in o.decay_at:
        factor = 0.5 * (1 + math.cos(math.pi * step / cfg.steps[stage]))
    return {"eg": o.lr_aae * factor, "d": o.lr_aae * o.lr_disc_scale * factor, "phi": o.lr_phi * factor}


def set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], cfg, stage: str, step: int) -> None:
    for key, lr in learning_rates(cfg, stage, step).items():
        for group in optimizers[key].param_groups:
            group["lr"] = lr


def build_optimizers(model, cfg) -> dict[str, torch.optim.Optimizer]:
    """Adam for E+G and for D_z+D_x (Eq. 5), and for Phi+Phi^-1, at ``learning_rates``."""
    params = {key: [p for path in paths for p in model.get_submodule(path).parameters()] for key, paths in OPTIMIZED.items()}
    o, lr = cfg.optim, learning_rates(cfg)
    # fused: one kernel over all of an optimiser's tensors instead of a loop of small ops per parameter (on CPU
    # torch's default is that loop, a tenth of a small model's step)
    return {"eg": torch.optim.Adam(params["eg"], lr["eg"], o.betas_aae, fused=True),
            "d": torch.optim.Adam(params["d"], lr["d"], o.betas_aae, fused=True),
            "phi": torch.optim.Adam(params["phi"], lr["phi"], o.betas_phi, fused=True)}
