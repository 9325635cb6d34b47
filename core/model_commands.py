"""The commands that use a trained model: ``encode``, ``retrieve``, ``edit``, ``generate``, ``audit``, ``info``, and
``plugins``; each a few lines over a public function."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from fsx.checkpoint import CheckpointError, read_metadata
from fsx.cli_support import (AttributeList, BadInput, _attribute_name, _load_model, _note_slow_plugins, _output_file,
                             _output_folder, _report_plugin_problems, _report_skipped, _save_png, _write_errors_named)
from fsx.data.specs import list_images, load_images, photo_aligner
from fsx.embeddings import default_attribute, encode_files, load_embeddings, retrieve as rank, save_embeddings
from fsx.eval.audit import audit as run_audit, write_audit
from fsx.model import PRIORS, RESIDUAL_EDITS
from fsx.model_io import describe
from fsx.plugins import attribute_table, get_registry


def _aligner(align: bool):
    """fsx prepare's alignment for raw photos, or None (a one-line warning where it was asked for and the faces
    extra is missing: the photo's whole frame is then squashed to the model's size)."""
    aligner = photo_aligner() if align else None
    if align and aligner is None:
        click.echo("warning: raw photos are not aligned (the faces extra is missing: pip install 'fsx[faces]'); "
                   "their whole frame is resized to the model's size", err=True)
    return aligner


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Embeddings file (.safetensors).")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@click.option("--align/--no-align", default=True, show_default=True,
              help="Detect, align and equalise the face of a raw photo as fsx prepare does (needs fsx[faces]).")
def encode(checkpoint, images, out, strict, align):
    """Encode IMAGES (files, synthfaces:SPLIT:INDEX or prepared:DIR:ROW) into sub-vectors, saved as safetensors (unreadable images
    are skipped and listed)."""
    model = _load_model(checkpoint)
    out = _output_file(out)  # a folder that cannot be made is named before the pictures are read
    try:
        emb, files, skipped = encode_files(model, list(images), strict=strict, aligner=_aligner(align))
    except ValueError as exc:
        raise BadInput(str(exc))
    _report_skipped(skipped)
    try:
        save_embeddings(out, emb, files, model)
    except OSError as exc:
        raise BadInput(f"could not write {out}: {exc.strerror or exc}")
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
@click.option("--align/--no-align", default=True, show_default=True,
              help="Detect, align and equalise the face of a raw photo as fsx prepare does (needs fsx[faces]).")
def retrieve(checkpoint, query, gallery, by, k, strict, align):
    """Print the K gallery images most similar to the query in one sub-vector, as Figure 4 shows."""
    model, aligner = _load_model(checkpoint), _aligner(align)
    if by is None:
        by = default_attribute(model, ("verification",), label="person") or "all"
    elif by != "all":
        by = _attribute_name(by, "--by")
    try:
        if Path(gallery).is_dir():
            emb, files, skipped = encode_files(model, list_images(gallery), strict=strict, aligner=aligner)
            _report_skipped(skipped)
        elif Path(gallery).is_file():
            emb, files = load_embeddings(gallery, model)
        else:
            raise BadInput(f"--gallery {gallery}: no such folder or embeddings file")
        q, _, _ = encode_files(model, [query], strict=True, aligner=aligner)
        hits = rank(q, emb, files, by, k)
    except ValueError as exc:  # CheckpointError and ImageReadError are ValueErrors too
        raise BadInput(str(exc))
    for place, (f, score) in enumerate(hits, 1):
        click.echo(f"{place}\t{score:.4f}\t{f}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--source", required=True, help="Image whose attributes are taken.")
@click.option("--target", required=True, help="Image that receives them.")
@click.option("--attributes", "attributes", type=AttributeList(), required=True)
@click.option("--except", "everything_except", is_flag=True, help="Transfer everything except these attributes.")
@click.option("--residual", type=click.Choice(RESIDUAL_EDITS), is_flag=False, flag_value="full", default=None,
              help="Keep what the embedding does not return of the face the edit stays on (the target; the source "
                   "with --except): 'full' (the bare flag) draws the unedited attributes as G(E(x)) does; "
                   "'projected' first removes the part of it along the edited attributes (FaceModel.transfer).")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--align/--no-align", default=True, show_default=True,
              help="Detect, align and equalise the face of a raw photo as fsx prepare does (needs fsx[faces]).")
def edit(checkpoint, source, target, attributes, everything_except, residual, out, align):
    """Transfer attributes from SOURCE to TARGET, as in Figure 5; the PNG shows source, target and result."""
    model, aligner = _load_model(checkpoint), _aligner(align)
    try:
        src, tgt = (load_images([name], model.image_size, aligner) for name in (source, target))
    except ValueError as exc:
        raise BadInput(str(exc))
    names = [a.name for a in attributes]
    with torch.no_grad():
        result = model.transfer(src, tgt, names, everything_except=everything_except, residual=residual).cpu()
    _save_png(torch.cat([src, tgt, result]), out, nrow=3)
    click.echo(f"wrote {out}: {'everything except ' if everything_except else ''}{','.join(names)} from {source} onto {target}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prior", type=click.Choice(PRIORS), default="codes", show_default=True,
              help="codes: z* from the Gaussian fitted to E's codes of training pictures when training ended; "
                   "standard: z* ~ N(0, I), as the paper samples.")
def generate(checkpoint, n, out, seed, prior):
    """Write N random faces G(z*) as a grid PNG."""
    model = _load_model(checkpoint)
    with torch.no_grad():
        images = model.generate(n, generator=torch.Generator().manual_seed(seed), prior=prior).cpu()
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
    model = _load_model(checkpoint)
    name = _attribute_name(attribute, "--attribute") if attribute else None
    _output_folder(out)
    try:
        result = run_audit(model, data=data, split=split, attribute=name, n=n)
        write_audit(result, model, out)
    except (ValueError, FileNotFoundError) as exc:
        raise BadInput(str(exc))
    except OSError as exc:
        raise _write_errors_named(exc)
    click.echo(f"wrote {out}/audit.png and {out}/audit.csv ({len(result.rows)} samples)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List the installed attributes: name, aliases, dim, labels, package."""
    rows, problems = attribute_table(get_registry())
    if as_json:
        click.echo(json.dumps({"attributes": rows, "problems": problems, "slow": get_registry().slow}, indent=2))
        return
    header = ("NAME", "ALIASES", "DIM", "LABELS", "BATCHES", "PACKAGE")
    table = [header] + [(r["name"], ",".join(r["aliases"]) or "-", str(r["dim"]), ",".join(r["labels"]), r["sampler"],
                         r["package"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    _report_plugin_problems()
    _note_slow_plugins()


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
def info(checkpoint: str) -> None:
    """Show what a checkpoint's metadata says (without loading its weights)."""
    try:
        meta = read_metadata(checkpoint)
        lines = describe(meta)
    except CheckpointError as exc:
        raise BadInput(str(exc))
    except (KeyError, TypeError, AttributeError) as exc:
        missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise BadInput(f"{checkpoint}: its metadata is incomplete or malformed ({missing!r} is missing "
                       f"or of the wrong type)")
    click.echo(f"file:        {checkpoint}")
    for line in lines:
        click.echo(line)
