"""The commands that make models and data: ``train``, ``synth``, ``prepare`` and ``eval``; each a few lines over a
public function (``fsx.cli`` assembles them with ``fsx.model_commands``)."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

import click
from tqdm import tqdm

from fsx.checkpoint import CheckpointError, read_metadata
from fsx.cli_support import (AttributeList, BadInput, _load_model, _output_folder, _report_skipped, _save_png,
                             _write_errors_named)
from fsx.data.export import export_folder
from fsx.data.faces import FacesExtraMissing
from fsx.data.faces.prepare import prepare_source, prepare_summary
from fsx.data.preview import synth_grid
from fsx.data.synthfaces import PERSONS
from fsx.eval import evaluate
from fsx.folder_lock import FolderBusyError, folder_lock
from fsx.sizes import SUPPORTED_SIZES
from fsx.train import NonFiniteLossError, TrainingInterrupted, train as run_training
from fsx.train.config import PRESETS
from fsx.train.distributed import dist_info, relaunch
from fsx.train.options import OptionError, config_from_options
from fsx.train.run_folder import BOOKKEEPING
from fsx.train.stages import STAGES


@click.command()
@click.option("--attributes", "attributes", type=AttributeList(), default="pose,id,expr,style", show_default=True,
              help="Comma-separated attribute names or aliases; their order is the sub-vector layout.")
@click.option("--data", default="synthfaces", show_default=True,
              help="synthfaces | NAME=synthfaces:FIELD+FIELD,... (label-partial) | NAME=FOLDER with labels.csv")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="demo", show_default=True)
@click.option("--stage", type=click.Choice(["all", *STAGES]), default="all", show_default=True)
@click.option("--steps", default=None, metavar="N|STAGE=N,...",
              help="Steps of each selected stage, or per stage (aae=1000,joint=200); the preset's otherwise.")
@click.option("--batch-size", type=click.IntRange(min=2), default=None)
@click.option("--image-size", type=click.Choice([str(s) for s in SUPPORTED_SIZES]), default=None)
@click.option("--width", type=float, default=None, help="Channel width multiplier of E, G and D_x.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/fsx", show_default=True, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.safetensors.")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), default=None, help="Start from this model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "auto"]), default=None,
              help="What the training steps compute in (weights stay fp32): bf16 autocast, or auto: bf16 where the "
                   "device computes it natively (a CPU with AVX512-BF16 or AMX, a CUDA GPU), fp32 elsewhere "
                   "[default: the preset's; demo auto, the others fp32].")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True, help="Processes (DDP) to launch.")
@click.option("--option", "options", multiple=True, metavar="ATTR.KEY=VALUE",
              help="Attribute option, e.g. identity.margin=0.3 or expression.weight=2 (repeatable).")
@click.option("--set", "settings", multiple=True, metavar="SECTION.KEY=VALUE",
              help="A training option without a flag of its own (fsx.train.TrainConfig's model, optim, loss and "
                   "synth sections, mirror_p), e.g. loss.rec_phi=20 or optim.d_x_every=4 (repeatable).")
@click.option("--log-every", type=click.IntRange(min=1), default=None)
@click.option("--sample-every", type=click.IntRange(min=1), default=None)
@click.option("--ckpt-every", type=click.IntRange(min=1), default=None)
@click.option("--judge-every", type=click.IntRange(min=0), default=None,
              help="SynthFaces runs: every N steps the judge reads G(E(x)) and the embedding's decode of 256 "
                   "validation pictures into metrics.jsonl and the console (0: never) [default: 250].")
@click.option("--threads", type=click.IntRange(min=0), default=None, help="CPU threads (0: torch's default).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader worker processes that read the coming batches (0: read in the loop); the batches "
                   "are the same for any number.")
@click.option("--force", is_flag=True, help="Replace the run already in OUT (its files are removed first).")
def train(attributes, data, preset, stage, steps, batch_size, image_size, width, out, resume, init, seed, device,
          precision, nproc, options, settings, log_every, sample_every, ckpt_every, judge_every, threads, workers, force):
    """Train the AAE, the disentangler, both jointly, then the disentangler again and the decoder alone (stages aae,
    disentangle, joint, refit, decoder; "all" runs those the preset gives steps).

    A folder that holds a run is not overwritten: continue it with --resume (as it was configured; give no
    options, or the same ones) or replace it with --force."""
    if nproc > 1:
        relaunch(nproc, sys.argv[1:])
    if resume and force:
        raise click.UsageError("--resume continues the run in --out and --force replaces it: give one of them")
    ctx = click.get_current_context()
    given = {n for n in ctx.params if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)}
    watch = dict(log_every=log_every, sample_every=sample_every, ckpt_every=ckpt_every, judge_every=judge_every,
                 threads=threads, device=device, workers=workers)
    cfg, bookkeeping = None, {k: v for k, v in watch.items() if k in given}
    if not (resume and not (given - {"out", "resume", "init", "nproc", *BOOKKEEPING})):  # else: the run's own
        try:
            cfg = config_from_options([a.name for a in attributes], preset, steps, options, settings, image_size and
                                      int(image_size), width, data=data, stage=stage, batch_size=batch_size, seed=seed,
                                      precision=precision, **watch)
        except OptionError as exc:
            raise click.BadParameter(str(exc), param_hint=exc.flag)
        except (ValueError, TypeError) as exc:  # attrs' validators give (message, field, ...): the message alone
            raise click.UsageError(exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc))
    with _train_errors(out):  # from here on a Ctrl-C is "interrupted while starting", exit 130
        if dist_info()[0] == 0:
            click.echo(f"fsx train: {'resuming' if resume else 'starting'} the run in {out}; preparing data ...", err=True)
        path = run_training(cfg, out, resume=resume, init=init, force=force, bookkeeping=bookkeeping,
                            report=lambda line: click.echo(line, err=True))
    if path is not None:
        layout = {a["name"]: a["dim"] for a in read_metadata(path)["attributes"]}
        click.echo(f"wrote {path} (layout {layout})")


@contextlib.contextmanager
def _train_errors(out: str):
    """What stops a run, as one line and an exit code: 2 a busy folder or bad input, 128 + the signal's number
    for a signal (130 Ctrl-C, 143 SIGTERM), 1 a diverging loss."""
    try:
        yield
    except FolderBusyError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2)
    except TrainingInterrupted as exc:  # a signal reaches every rank: one of them says so
        for s in (signal.SIGINT, signal.SIGTERM):  # a repeat (a job's every process is signalled) must not kill the
            signal.signal(s, signal.SIG_IGN)  # exit under way: Python drops its own handlers while it shuts down
        if dist_info()[0] == 0:
            click.echo(str(exc), err=True)
        raise SystemExit(128 + exc.signum)
    except KeyboardInterrupt:  # Ctrl-C before the loop took over SIGINT: nothing was trained yet
        if dist_info()[0] == 0:
            click.echo(f"interrupted while starting; no step was trained (nothing new in {out})", err=True)
        raise SystemExit(130)
    except NonFiniteLossError as exc:  # good input, a run that failed: exit 1 (every rank stops at that step)
        if dist_info()[0] == 0:
            raise click.ClickException(str(exc))
        raise SystemExit(1)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise BadInput(str(exc))
    except OSError as exc:  # a full disk, no permission: name the file
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise BadInput(f"{where}{exc.strerror or exc}")


@click.command()
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG file to write (a grid).")
@click.option("--export", "export", type=click.Path(file_okay=False), default=None,
              help="Folder to write as a labelled data set instead: PNG files and labels.csv.")
@click.option("--size", type=click.Choice([str(s) for s in SUPPORTED_SIZES]), default="64", show_default=True)
@click.option("-n", "--n", "n", type=click.IntRange(1), default=64, show_default=True, help="Number of faces.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True,
              help="With --export: the persons to draw from (train and test persons are disjoint).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vary", type=click.Choice(["pose", "identity", "expression", "style"]), default=None,
              help="Rows of one face where only this factor changes.")
def synth(out, export, size, n, split, seed, vary):
    """Write a grid of SynthFaces (the embedded data set) to a PNG, or export them as a labelled folder
    (--export DIR: every rendered factor a column of DIR/labels.csv)."""
    if (out is None) == (export is None):
        raise click.UsageError("give one of --out PNG (a grid) or --export DIR (a labelled folder)")
    if export is not None:
        try:
            table = export_folder(export, n, size=int(size), split=split, seed=seed)
        except (FileExistsError, OSError) as exc:
            raise BadInput(str(exc))
        click.echo(f"wrote {n} faces at {size} px and {table}")
        return
    if n > 4096:
        raise click.UsageError("a grid holds at most 4096 faces (-n); use --export for more")
    images = synth_grid(n=n, size=int(size), seed=seed, vary=vary)
    _save_png(images, out)
    click.echo(f"wrote {out}: {len(images)} faces at {size} px" + (f", varying {vary}" if vary else ""))


@click.command()
@click.argument("sources")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder to write into: one prepared folder per source, OUT/NAME.")
@click.option("--size", type=click.Choice([str(s) for s in SUPPORTED_SIZES]), default="128", show_default=True,
              help="Side of the aligned crops (train at this size or below).")
@click.option("--equalize", type=click.Choice(["off", "luminance", "clahe"]), default="luminance", show_default=True,
              help="Histogram equalisation of the crop's luminance (Sec. 4.2), or CLAHE.")
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default="hog", show_default=True,
              help="dlib's HOG face detector (fast) or its CNN one (finds more faces, ~15x slower on a CPU).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes.")
@click.option("--min-face", type=click.IntRange(1), default=40, show_default=True,
              help="Smallest face (box side, px in the picture) that is kept.")
def prepare(sources, out, size, equalize, detector, workers, min_face):
    """Detect, align, crop and equalise every face of SOURCES once and label its head pose (Sec. 4.2):
    NAME=PATH[,...] with NAME one of celeba, affectnet, vggface2, voxceleb, lfw (their official layouts) or any
    other name for a folder with labels.csv. Train on the result with --data NAME=prepared:OUT/NAME. A killed
    run continues where it stopped when started again with the same arguments. Needs pip install 'fsx[faces]'."""
    items = [s.strip() for s in sources.split(",") if s.strip()]
    pairs = [item.partition("=") for item in items]
    if not pairs or any(not name or not path for name, _, path in pairs):
        raise click.UsageError(f"SOURCES must be NAME=PATH[,NAME=PATH...], got {sources!r}")
    for name, _, path in pairs:
        target = Path(out) / name
        try:
            with folder_lock(target, "fsx prepare"), tqdm(desc=f"prepare {name}", unit="img", leave=False,
                                                          disable=None) as bar:
                report = prepare_source(name, path, target, size=int(size), equalize=equalize, detector=detector,
                                        workers=workers, min_face=min_face, progress=bar.update)
        except FolderBusyError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(2)
        except (FacesExtraMissing, FileExistsError, FileNotFoundError, ValueError) as exc:
            raise BadInput(str(exc))
        click.echo(prepare_summary(name, report, target))
        _report_skipped(report["unreadable"])


@click.command(name="eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", default="synthfaces", show_default=True,
              help="The source measured on: synthfaces (its unseen test persons) or any source fsx train reads "
                   "(NAME=FOLDER, celeba=DIR, ...), split by its split column, else by persons.")
@click.option("--probe-data", default=None, help="Fit the probes on this source instead of a split of --data.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Report folder (default: CKPT's folder/eval).")
@click.option("--inception", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The FID network's safetensors [default: the one python -m fsx.eval.inception converted].")
@click.option("--fid-samples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Real pictures, samples and reconstructions per FID (0: no FID; 10000 as usually reported).")
@click.option("--test-persons", type=click.IntRange(min=2), default=PERSONS["test"], show_default=True)
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True,
              help="SynthFaces only: measure on the validation persons (to choose settings) or the test persons "
                   "(to report); both are unseen in training and disjoint.")
@click.option("--train-samples", type=click.IntRange(min=10), default=4000, show_default=True)
@click.option("--test-samples", type=click.IntRange(min=10), default=3200, show_default=True)
@click.option("--lfw", type=click.Path(file_okay=False, exists=True), default=None,
              help="LFW folder (lfw/<name>/*.jpg and pairs.txt): add Table 2's verification on real faces.")
@click.option("--seed", type=int, default=0, show_default=True)
def eval_(checkpoint, data, probe_data, out, inception, fid_samples, test_persons, split, train_samples, test_samples,
          lfw, seed):
    """Evaluate a model: metrics.json and report.md with figures, as Section 5 of the paper does."""
    model = _load_model(checkpoint)
    out = _output_folder(out or str(Path(checkpoint).parent / "eval"))
    try:
        m = evaluate(model, out, data=data, test_persons=test_persons, split=split, train_samples=train_samples,
                     test_samples=test_samples, inception=inception, fid_samples=fid_samples, seed=seed,
                     lfw=lfw, probe_data=probe_data, progress=lambda s: click.echo(s, err=True))
    except (ValueError, FileNotFoundError) as exc:
        raise BadInput(str(exc))
    except OSError as exc:
        raise _write_errors_named(exc)
    if m["fid"]["value"] is None:
        click.echo(f"note: FID skipped: {m['fid']['reason']}", err=True)
    if "reason" in (m.get("judge") or {}):
        click.echo(f"note: judge skipped: {m['judge']['reason']}", err=True)
    click.echo(f"wrote {out}/metrics.json and {out}/report.md ({m['wall_time_s']} s)")


