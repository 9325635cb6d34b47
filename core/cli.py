"""The ``fsx`` command line: a thin layer over the Python API (every command calls a public function)."""

from __future__ import annotations

import json
import sys

import click

import fsx


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(fsx.__version__, prog_name="fsx")
def main() -> None:
    """fsx: compact, disentangled face embeddings with attribute plugins."""


@main.command()
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


@main.command()
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
            "encoder", "generator", "image_discriminator", "latent_discriminator")),
        "attributes:",
    ]
    for a in meta["attributes"]:
        lines.append(f"  {a['name']:<12} dim {a['dim']:<4} from {a.get('package', '')} {a.get('version', '')}".rstrip())
    info = meta.get("info") or {}
    for key, value in sorted(info.items()):
        lines.append(f"{key + ':':<13}{json.dumps(value) if not isinstance(value, str) else value}")
    return lines


def _register_more_commands() -> None:
    """Commands that live in their own modules (training, SynthFaces, evaluation)."""
    from fsx import commands  # noqa: F401


_register_more_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
