"""What the commands of the CLI share: the ``--attributes`` parameter type, loading a model, writing a PNG, and
reporting skipped pictures, each as one line."""

from __future__ import annotations

import functools
from pathlib import Path

import click
from torchvision.utils import save_image

from fsx.checkpoint import CheckpointError
from fsx.model_io import load
from fsx.plugins import UnknownAttributeError, get_registry


class BadInput(click.ClickException):
    """Input fsx refuses (a file, a folder, a field, a value): one line naming it, and exit code 2, as click's own
    usage errors have. A run that fails on good input (a diverging loss) keeps click's exit code 1."""

    exit_code = 2


class AttributeList(click.ParamType):
    """``pose,id,expr`` -> resolved Attribute objects; an unknown name exits with code 2 listing the known."""

    name = "attributes"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        _note_slow_plugins()
        try:
            return get_registry().resolve(value)
        except UnknownAttributeError as exc:
            self.fail(str(exc), param, ctx)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _report_plugin_problems() -> None:
    for problem in get_registry().problems:
        click.echo(f"warning: {problem}", err=True)


@functools.cache
def _note_slow_plugins() -> None:
    """Once per command: the plugins that slow every command down, by name."""
    for line in get_registry().slow:
        click.echo(f"note: {line}", err=True)


def _load_model(path):
    _note_slow_plugins()
    try:
        return load(path)
    except CheckpointError as exc:
        raise BadInput(str(exc))


def _report_skipped(skipped: list[str]) -> None:
    """Unreadable inputs that were skipped: how many, and each one with its reason (on stderr)."""
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s):", err=True)
        for line in skipped:
            click.echo(f"  {line}", err=True)


def _output_file(path: str) -> str:
    """The parent folder of an output file, created; a clear error where it cannot be (e.g. under a file)."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {path}: cannot create its folder ({exc.strerror or exc})")
    if Path(path).is_dir():
        raise BadInput(f"--out {path}: is a folder; give a file name")
    return path


def _save_png(images, out: str, nrow: int = 8) -> None:
    try:
        save_image(images, _output_file(out), nrow=nrow, padding=2, pad_value=1.0)
    except (OSError, ValueError) as exc:  # ValueError: Pillow knows no format for this suffix
        raise BadInput(f"could not write {out}: {getattr(exc, 'strerror', None) or exc}")


def _attribute_name(name: str, flag: str) -> str:
    try:
        return get_registry().get(name).name
    except KeyError as exc:
        raise click.BadParameter(str(exc).strip("'\""), param_hint=flag)


def _output_folder(path: str, flag: str = "--out") -> str:
    """A folder that output will go into, made and tried with a small write before any work is done: a path under
    a file, a read-only or full disk is one line naming it, not a traceback after minutes of work."""
    folder = Path(path)
    probe = folder / ".fsx-write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"fsx")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"{flag} {path}: cannot write there ({exc.strerror or exc})")
    return path


def _write_errors_named(exc: OSError) -> BadInput:
    """A write that failed after the work (the disk filled up meanwhile): the file and the reason."""
    return BadInput(f"could not write {exc.filename or 'the output'}: {exc.strerror or exc}")

