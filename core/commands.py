"""Commands of the ``fsx`` CLI beyond the basic ones (kept apart so cli.py stays one screen)."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from fsx.cli import AttributeList, main
from fsx.train.config import PRESETS, STAGES


def _parse_options(values) -> dict:
    """``identity.margin=0.3`` -> {"identity": {"margin": 0.3}} (values parsed as JSON when they are)."""
    out: dict = {}
    for item in values:
        key, eq, raw = item.partition("=")
        attr, dot, opt = key.partition(".")
        if not eq or not dot:
            raise click.BadParameter(f"{item!r}: expected ATTRIBUTE.OPTION=VALUE, e.g. identity.margin=0.3")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(attr, {})[opt] = value
    return out


def _relaunch_distributed(nproc: int) -> None:
    """``--nproc N``: run this same command under torch.distributed.run with N processes."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "fsx", *args]
    raise SystemExit(subprocess.call(cmd))


@main.command()
@click.option("--attributes", "attributes", type=AttributeList(), default="pose,id,expr,style", show_default=True,
              help="Comma-separated attribute names or aliases; their order is the sub-vector layout.")
@click.option("--data", default="synthfaces", show_default=True,
              help="synthfaces | NAME=synthfaces:FIELD+FIELD,... (label-partial) | NAME=FOLDER with labels.csv")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="demo", show_default=True)
@click.option("--stage", type=click.Choice(["all", *STAGES]), default="all", show_default=True)
@click.option("--steps", type=click.IntRange(min=0), default=None, help="Steps of each selected stage (preset's otherwise).")
@click.option("--batch-size", type=click.IntRange(min=2), default=None)
@click.option("--image-size", type=click.Choice(["32", "64", "128", "256"]), default=None)
@click.option("--width", type=float, default=None, help="Channel width multiplier of E, G and D_x.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/fsx", show_default=True, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.safetensors.")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), default=None, help="Start from this model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True, help="Processes (DDP) to launch.")
@click.option("--option", "options", multiple=True, metavar="ATTR.KEY=VALUE",
              help="Attribute option, e.g. identity.margin=0.3 or expression.weight=2 (repeatable).")
@click.option("--log-every", type=click.IntRange(min=1), default=None)
@click.option("--sample-every", type=click.IntRange(min=1), default=None)
@click.option("--ckpt-every", type=click.IntRange(min=1), default=None)
@click.option("--threads", type=click.IntRange(min=0), default=None, help="CPU threads (0: torch's default).")
@click.option("--inject-nan", default=None, hidden=True, help="Testing: STAGE:STEP:TERM becomes NaN.")
def train(attributes, data, preset, stage, steps, batch_size, image_size, width, out, resume, init, seed, device,
          precision, nproc, options, log_every, sample_every, ckpt_every, threads, inject_nan):
    """Train the AAE, the disentangler and both jointly (stages aae, disentangle, joint)."""
    from fsx.checkpoint import CheckpointError
    from fsx.train import NonFiniteLossError, TrainingInterrupted, make_config, train as run_training

    if nproc > 1:
        _relaunch_distributed(nproc)
    names = tuple(a.name for a in attributes)
    stage_steps = None
    if steps is not None:
        base = dict(PRESETS[preset].get("steps", {}))
        selected = STAGES if stage == "all" else (stage,)
        stage_steps = {s: (steps if s in selected else base.get(s, 0)) for s in STAGES}
    try:
        cfg = make_config(
            preset, attributes=names, data=data, stage=stage, steps=stage_steps, batch_size=batch_size,
            image_size=int(image_size) if image_size else None, width=width, seed=seed, device=device,
            precision=precision, attribute_options=_parse_options(options) or None, log_every=log_every,
            sample_every=sample_every, ckpt_every=ckpt_every, threads=threads)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc))
    try:
        path = run_training(cfg, out, resume=resume, init=init, inject_nan=inject_nan)
    except NonFiniteLossError as exc:
        raise click.ClickException(str(exc))
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(130)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc))
    if path is not None:
        click.echo(f"wrote {path} (layout {dict((a.name, a.dim) for a in attributes)})")


@main.command()
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--size", type=click.Choice(["32", "64", "128", "256"]), default="64", show_default=True)
@click.option("--n", "n", type=click.IntRange(1, 4096), default=64, show_default=True, help="Number of faces.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vary", type=click.Choice(["pose", "identity", "expression", "style"]), default=None,
              help="Rows of one face where only this factor changes.")
def synth(out, size, n, seed, vary):
    """Write a grid of SynthFaces (the embedded data set) to a PNG."""
    from torchvision.utils import save_image

    from fsx.data.preview import synth_grid

    images = synth_grid(n=n, size=int(size), seed=seed, vary=vary)
    save_image(images, out, nrow=8, padding=2, pad_value=1.0)
    click.echo(f"wrote {out}: {len(images)} faces at {size} px" + (f", varying {vary}" if vary else ""))
