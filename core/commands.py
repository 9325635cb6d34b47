"""The commands of the ``fsx`` CLI, each a thin wrapper over a public function; ``fsx.cli`` assembles them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

import fsx
from fsx.sizes import SUPPORTED_SIZES
from fsx.data.synthfaces import PERSONS
from fsx.train.config import PRESETS, STAGES


class AttributeList(click.ParamType):
    """``pose,id,expr`` -> resolved Attribute objects; an unknown name exits with code 2 listing the known."""

    name = "attributes"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from fsx.plugins import UnknownAttributeError, get_registry

        try:
            return get_registry().resolve(value)
        except UnknownAttributeError as exc:
            self.fail(str(exc), param, ctx)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _report_plugin_problems() -> None:
    from fsx.plugins import get_registry

    for problem in get_registry().problems:
        click.echo(f"warning: {problem}", err=True)


def _json_or_text(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _parse_options(values) -> dict:
    """``identity.margin=0.3`` -> {"identity": {"margin": 0.3}} (values parsed as JSON when they are)."""
    out: dict = {}
    for item in values:
        key, eq, raw = item.partition("=")
        attr, dot, opt = key.partition(".")
        if not eq or not dot:
            raise click.BadParameter(f"{item!r}: expected ATTRIBUTE.OPTION=VALUE, e.g. identity.margin=0.3")
        out.setdefault(attr, {})[opt] = _json_or_text(raw)
    return out


# Training options that have a flag of their own: ``--set`` names the flag instead of setting them a second way.
FLAGGED = {"attributes": "--attributes", "attribute_options": "--option", "data": "--data", "preset": "--preset",
           "stage": "--stage", "steps": "--steps", "batch_size": "--batch-size", "model.image_size": "--image-size",
           "model.width": "--width", "seed": "--seed", "device": "--device", "precision": "--precision",
           "log_every": "--log-every", "sample_every": "--sample-every", "ckpt_every": "--ckpt-every",
           "judge_every": "--judge-every", "threads": "--threads", "workers": "--workers"}


def _parse_settings(values) -> dict:
    """``loss.rec_phi=20`` -> {"loss": {"rec_phi": 20}}: an option of a section of TrainConfig (model, optim, loss,
    synth) or a top-level field without a flag, the value parsed as JSON when it is JSON; for tuple fields a
    comma-separated list (``optim.betas_aae=0.5,0.999``)."""
    import attrs

    from fsx.train.config import SECTIONS, TrainConfig

    settable = {f.name: f for f in attrs.fields(TrainConfig) if f.name not in SECTIONS and f.name not in FLAGGED}
    settable.update({f"{section}.{f.name}": f for section, cls in SECTIONS.items() for f in attrs.fields(cls)
                     if f"{section}.{f.name}" not in FLAGGED})
    out: dict = {}
    for item in values:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. loss.rec_phi=20")
        if key in FLAGGED:
            raise click.BadParameter(f"{key!r} has its own flag: use {FLAGGED[key]}")
        if key not in settable:
            raise click.BadParameter(f"{key!r} is not a training option; --set takes: {', '.join(settable)}")
        value = _json_or_text(raw)
        if isinstance(value, str) and settable[key].converter is tuple:
            value = tuple(_json_or_text(part) for part in value.split(",") if part)
        section, dot, name = key.rpartition(".")
        if dot:
            out.setdefault(section, {})[name] = value
        else:
            out[name] = value
    return out


def _parse_steps(raw: str | None, preset: str, stage: str) -> dict | None:
    """``--steps N`` (each stage ``--stage`` selects) or ``--steps aae=1000,joint=200`` -> every stage's steps."""
    from fsx.train import make_config

    if raw is None:
        return None
    base = make_config(preset, stage=stage)
    out = dict(base.steps)
    try:
        if "=" not in raw:
            out.update({s: int(raw) for s in base.stages})
        else:
            for item in raw.split(","):
                name, _, n = item.partition("=")
                if name.strip() not in STAGES:
                    raise click.BadParameter(f"{name.strip()!r} is not a stage; stages are {', '.join(STAGES)}",
                                             param_hint="--steps")
                out[name.strip()] = int(n)
    except ValueError:
        raise click.BadParameter(f"{raw!r}: expected a number of steps or STAGE=N,..., e.g. aae=1000,joint=200",
                                 param_hint="--steps")
    if any(n < 0 for n in out.values()):
        raise click.BadParameter(f"{raw!r}: steps cannot be negative", param_hint="--steps")
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
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
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
    """Train the AAE, the disentangler, both jointly, then refit the disentangler (stages aae, disentangle, joint,
    refit; "all" runs those the preset gives steps).

    A folder that holds a run is not overwritten: continue it with --resume (as it was configured; give no
    options, or the same ones) or replace it with --force."""
    import attrs

    import fsx
    from fsx.checkpoint import CheckpointError
    from fsx.folder_lock import FolderBusyError
    from fsx.train import NonFiniteLossError, TrainingInterrupted, make_config, train as run_training
    from fsx.train.run_folder import BOOKKEEPING

    if nproc > 1:
        _relaunch_distributed(nproc)
    if resume and force:
        raise click.UsageError("--resume continues the run in --out and --force replaces it: give one of them")
    ctx = click.get_current_context()
    given = {n for n in ctx.params if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)}
    names = tuple(a.name for a in attributes)
    try:
        if resume and not (given - {"out", "resume", "init", "nproc", *BOOKKEEPING}):
            cfg = None  # the run's own configuration, with the bookkeeping given now on top
            bookkeeping = {k: v for k, v in dict(log_every=log_every, sample_every=sample_every, ckpt_every=ckpt_every,
                                                  judge_every=judge_every, threads=threads, device=device, workers=workers).items()
                           if k in given}
        else:
            settings = _parse_settings(settings)
            flags = dict(
                attributes=names, data=data, stage=stage, steps=_parse_steps(steps, preset, stage),
                batch_size=batch_size, seed=seed, device=device, precision=precision,
                attribute_options=_parse_options(options) or None, log_every=log_every, sample_every=sample_every,
                ckpt_every=ckpt_every, judge_every=judge_every, threads=threads, workers=workers)
            model = {**settings.pop("model", {}), "image_size": int(image_size) if image_size else None, "width": width}
            cfg = make_config(preset, model=model, **flags, **settings)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc))
    try:
        click.echo(f"fsx train: {'resuming' if resume else 'starting'} the run in {out}; preparing data ...", err=True)
        if cfg is None and bookkeeping:
            from fsx.train import TrainConfig
            from fsx.train.run_folder import check_run_folder

            cfg = attrs.evolve(TrainConfig.from_dict(check_run_folder(Path(out), True, False)), **bookkeeping)
        path = run_training(cfg, out, resume=resume, init=init, force=force,
                            report=lambda line: click.echo(line, err=True))
    except FolderBusyError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2)
    except NonFiniteLossError as exc:
        raise click.ClickException(str(exc))
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(130)
    except KeyboardInterrupt:  # Ctrl-C before the loop took over SIGINT: nothing was trained yet
        click.echo(f"interrupted while starting; no step was trained (nothing new in {out})", err=True)
        raise SystemExit(130)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc))
    except OSError as exc:  # a full disk, no permission: name the file
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}")
    if path is not None:
        layout = {a["name"]: a["dim"] for a in fsx.read_metadata(path)["attributes"]}
        click.echo(f"wrote {path} (layout {layout})")


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
        from fsx.data.export import export_folder

        try:
            table = export_folder(export, n, size=int(size), split=split, seed=seed)
        except (FileExistsError, OSError) as exc:
            raise click.ClickException(str(exc))
        click.echo(f"wrote {n} faces at {size} px and {table}")
        return
    if n > 4096:
        raise click.UsageError("a grid holds at most 4096 faces (-n); use --export for more")
    from fsx.data.preview import synth_grid

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
    from tqdm import tqdm

    from fsx.data.faces import FacesExtraMissing
    from fsx.data.prepare import prepare_source
    from fsx.folder_lock import FolderBusyError, folder_lock

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
            raise click.ClickException(str(exc))
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(report["rejected"].items())) or "none"
        speed = f", {report['pictures_per_second']} pictures/s" if report["pictures_per_second"] else ""
        click.echo(f"{name}: {report['pictures']} pictures, {report['faces']} faces kept, rejected: {rejected}; "
                   f"{len(report['unreadable'])} unreadable{speed} -> {target} (--data {name}=prepared:{target})")
        _report_skipped(report["unreadable"])


def _load_model(path):
    import fsx

    try:
        return fsx.load(path)
    except fsx.CheckpointError as exc:
        raise click.ClickException(str(exc))


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
    from pathlib import Path

    from fsx.eval import evaluate

    model = _load_model(checkpoint)
    out = out or str(Path(checkpoint).parent / "eval")
    try:
        m = evaluate(model, out, data=data, test_persons=test_persons, split=split, train_samples=train_samples,
                     test_samples=test_samples, inception=inception, fid_samples=fid_samples, seed=seed,
                     lfw=lfw, probe_data=probe_data, progress=lambda s: click.echo(s, err=True))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc))
    if m["fid"]["value"] is None:
        click.echo(f"note: FID skipped: {m['fid']['reason']}", err=True)
    if "reason" in (m.get("judge") or {}):
        click.echo(f"note: judge skipped: {m['judge']['reason']}", err=True)
    click.echo(f"wrote {out}/metrics.json and {out}/report.md ({m['wall_time_s']} s)")


def _report_skipped(skipped: list[str]) -> None:
    """Unreadable inputs that were skipped: how many, and each one with its reason (on stderr)."""
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s):", err=True)
        for line in skipped:
            click.echo(f"  {line}", err=True)


def _output_file(path: str) -> str:
    """The parent folder of an output file, created; a clear error where it cannot be (e.g. under a file)."""
    from pathlib import Path

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"--out {path}: cannot create its folder ({exc.strerror or exc})")
    if Path(path).is_dir():
        raise click.ClickException(f"--out {path}: is a folder; give a file name")
    return path


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Embeddings file (.safetensors).")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
def encode(checkpoint, images, out, strict):
    """Encode IMAGES (files, synthfaces:SPLIT:INDEX or prepared:DIR:ROW) into sub-vectors, saved as safetensors (unreadable images
    are skipped and listed)."""
    from fsx.tools import encode_files, save_embeddings

    model = _load_model(checkpoint)
    try:
        emb, files, skipped = encode_files(model, list(images), strict=strict)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    _report_skipped(skipped)
    try:
        save_embeddings(_output_file(out), emb, files, model)
    except OSError as exc:
        raise click.ClickException(f"could not write {out}: {exc.strerror or exc}")
    click.echo(f"wrote {out}: {len(files)} images" + (f" ({len(skipped)} skipped)" if skipped else "") + ", "
               + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in emb.items()))


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--query", required=True, help="Query image (file, synthfaces:SPLIT:INDEX or prepared:DIR:ROW).")
@click.option("--gallery", required=True, help="A folder of images or an embeddings file from fsx encode.")
@click.option("--by", default=None, help="Sub-vector to compare: an attribute, or 'all' for the whole f "
              "[default: the model's first attribute that verifies persons, else all].")
@click.option("-k", "k", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--strict", is_flag=True, help="Stop at the first unreadable gallery image instead of skipping it.")
def retrieve(checkpoint, query, gallery, by, k, strict):
    """Print the K gallery images most similar to the query in one sub-vector, as Figure 4 shows."""
    from pathlib import Path

    from fsx.tools import encode_files, list_images, load_embeddings, retrieve as run

    from fsx.tools import default_attribute

    model = _load_model(checkpoint)
    if by is None:
        by = default_attribute(model, ("verification",), label="person") or "all"
    elif by != "all":
        by = _attribute_name(by, "--by")
    try:
        if Path(gallery).is_dir():
            emb, files, skipped = encode_files(model, list_images(gallery), strict=strict)
            _report_skipped(skipped)
        elif Path(gallery).is_file():
            emb, files = load_embeddings(gallery)
        else:
            raise click.ClickException(f"--gallery {gallery}: no such folder or embeddings file")
        q, _, _ = encode_files(model, [query], strict=True)
        hits = run(q, emb, files, by, k)
    except ValueError as exc:  # CheckpointError and ImageReadError are ValueErrors too
        raise click.ClickException(str(exc))
    for rank, (f, score) in enumerate(hits, 1):
        click.echo(f"{rank}\t{score:.4f}\t{f}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--source", required=True, help="Image whose attributes are taken.")
@click.option("--target", required=True, help="Image that receives them.")
@click.option("--attributes", "attributes", type=AttributeList(), required=True)
@click.option("--except", "everything_except", is_flag=True, help="Transfer everything except these attributes.")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def edit(checkpoint, source, target, attributes, everything_except, out):
    """Transfer attributes from SOURCE to TARGET, as in Figure 5; the PNG shows source, target and result."""
    import torch

    from fsx.tools import load_images

    model = _load_model(checkpoint)
    try:
        src, tgt = load_images([source], model.image_size), load_images([target], model.image_size)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    names = [a.name for a in attributes]
    with torch.no_grad():
        result = model.transfer(src, tgt, names, everything_except=everything_except).cpu()
    _save_png(torch.cat([src, tgt, result]), out, nrow=3)
    click.echo(f"wrote {out}: {'everything except ' if everything_except else ''}{','.join(names)} from {source} onto {target}")


def _save_png(images, out: str, nrow: int = 8) -> None:
    from torchvision.utils import save_image

    try:
        save_image(images, _output_file(out), nrow=nrow, padding=2, pad_value=1.0)
    except (OSError, ValueError) as exc:  # ValueError: Pillow knows no format for this suffix
        raise click.ClickException(f"could not write {out}: {getattr(exc, 'strerror', None) or exc}")


def _attribute_name(name: str, flag: str) -> str:
    from fsx.plugins import get_registry

    try:
        return get_registry().get(name).name
    except KeyError as exc:
        raise click.BadParameter(str(exc).strip("'\""), param_hint=flag)


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def generate(checkpoint, n, out, seed):
    """Write N random faces G(z*), z* ~ N(0, I), as a grid PNG."""
    import torch

    model = _load_model(checkpoint)
    with torch.no_grad():
        images = model.generate(n, generator=torch.Generator().manual_seed(seed)).cpu()
    _save_png(images, out)
    click.echo(f"wrote {out}: {n} samples")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", default="synthfaces", show_default=True,
              help="synthfaces, or any source fsx train reads (its test rows, as fsx eval splits it).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="SynthFaces only: the persons to audit.")
@click.option("--attribute", default=None,
              help="Any attribute with a classification or regression probe [default: the model's first with a "
              "classification probe, else regression].")
@click.option("-n", "n", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True)
def audit(checkpoint, data, split, attribute, n, out):
    """List the samples whose label the embedding disagrees with most, as Section 5.5 does (audit.png, audit.csv)."""
    from fsx.tools import audit as run, write_audit

    model = _load_model(checkpoint)
    name = _attribute_name(attribute, "--attribute") if attribute else None
    try:
        result = run(model, data=data, split=split, attribute=name, n=n)
        write_audit(result, model, out)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc))
    click.echo(f"wrote {out}/audit.png and {out}/audit.csv ({len(result.rows)} samples)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List the installed attributes: name, aliases, dim, labels, package."""
    from fsx.plugins import get_registry

    reg = get_registry()
    rows = [
        {
            "name": a.name,
            "aliases": list(a.aliases),
            "dim": a.dim,
            "labels": list(a.label_names),
            "sampler": " x ".join(f"{c} {g}" for g, c in zip(a.sampler.group_by, a.sampler.counts)) or "random",
            "package": f"{a.package} {a.version}".strip(),
        }
        for a in reg.attributes.values()
    ]
    if as_json:
        click.echo(json.dumps({"attributes": rows, "problems": [str(p) for p in reg.problems]}, indent=2))
        return
    header = ("NAME", "ALIASES", "DIM", "LABELS", "BATCHES", "PACKAGE")
    table = [header] + [
        (r["name"], ",".join(r["aliases"]) or "-", str(r["dim"]), ",".join(r["labels"]), r["sampler"], r["package"])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    _report_plugin_problems()


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
def info(checkpoint: str) -> None:
    """Show what a checkpoint's metadata says (without loading its weights)."""
    try:
        meta = fsx.read_metadata(checkpoint)
        lines = _describe(meta)
    except fsx.CheckpointError as exc:
        raise click.ClickException(str(exc))
    except (KeyError, TypeError, AttributeError) as exc:
        missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise click.ClickException(f"{checkpoint}: its metadata is incomplete or malformed ({missing!r} is missing "
                                   f"or of the wrong type)")
    click.echo(f"file:        {checkpoint}")
    for line in lines:
        click.echo(line)


def _describe(meta: dict) -> list[str]:
    """The lines of ``fsx info`` for a checkpoint's metadata (KeyError/TypeError where a field is missing)."""
    cfg = meta["config"]
    lines = [
        f"fsx version: {meta.get('fsx_version')}",
        f"image size:  {cfg['image_size']}",
        f"latent dim:  {cfg.get('latent_dim') or sum(a['dim'] for a in meta['attributes'])}",
        f"width:       {cfg.get('width')}",
        "backbones:   " + ", ".join(f"{k}={cfg.get(k)}" for k in (
            "encoder", "generator", "image_discriminator", "latent_discriminator"))
        + (f" (options {json.dumps(cfg['backbone_options'])})" if cfg.get("backbone_options") else ""),
        "attributes:",
    ]
    for a in meta["attributes"]:
        lines.append(f"  {a['name']:<12} dim {a['dim']:<4} from {a.get('package', '')} {a.get('version', '')}".rstrip())
    info = meta.get("info") or {}
    for key, value in sorted(info.items()):
        lines.append(f"{key + ':':<13}{json.dumps(value) if not isinstance(value, str) else value}")
    return lines
