"""safetensors checkpoints: tensors plus a JSON header that says how to rebuild the model.

No pickle anywhere: the metadata is JSON inside the safetensors header; files are written to a temporary
name in the same folder and renamed, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

FORMAT = "fsx-model"


class CheckpointError(ValueError):
    """A file that cannot be loaded as an fsx checkpoint; the message names the file and the reason."""


class CheckpointWriteError(OSError):
    """A file that could not be written (disk full, no permission, ...); the message names it, and the file that
    was there before is kept as it was."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a file-size limit, no permission: name the file, keep the old one
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        kept = "; the previous file is unchanged" if path.exists() else ""
        raise CheckpointWriteError(f"could not write {path}: {exc.strerror or exc}{kept}") from None
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, object]) -> None:
    """Atomically save tensors with JSON-encodable ``metadata`` (stored under the header key ``fsx``)."""
    flat = {k: t.detach().to("cpu").contiguous().clone() for k, t in tensors.items()}
    atomic_write_bytes(path, st_save(flat, metadata={"fsx": json.dumps(metadata, sort_keys=True)}))


def read_metadata(path: str | os.PathLike, expected_format: str | None = FORMAT) -> dict:
    """The JSON metadata of an fsx safetensors file, with clear errors for every way it can be wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("fsx")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file, but not an fsx checkpoint (no 'fsx' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the fsx metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the fsx metadata is a JSON {type(meta).__name__}, not an object")
    if expected_format and meta.get("format") != expected_format:
        raise CheckpointError(f"{path}: an fsx file of format {meta.get('format')!r}, expected {expected_format!r}")
    return meta


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (every byte range is checked by safetensors)."""
    try:
        out = {}
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            for key in fh.keys():
                out[key] = fh.get_tensor(key)
        return out
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: tensor data unreadable (truncated or corrupt?): {exc}") from None


def save_model(model, path: str | os.PathLike, **extra) -> None:
    """Save a :class:`fsx.FaceModel`: its weights and the metadata needed to rebuild it.

    ``extra`` (e.g. ``data="synthfaces"``, ``preset="demo"``, ``steps={...}``) is merged into
    ``model.metadata`` and stored, so a checkpoint says what it was trained on and for how long.
    """
    from fsx import __version__

    model.metadata.update(extra)
    meta = {
        "format": FORMAT,
        "fsx_version": __version__,
        "config": model.config.to_dict(),
        "attributes": [
            {"name": s.name, "dim": s.dim, "package": s.package, "version": s.version} for s in model.config.attributes
        ],
        "info": model.metadata,
    }
    save_tensors(path, model.state_dict(), meta)


def load(path: str | os.PathLike, device: str | torch.device = "cpu", registry=None):
    """Load a checkpoint as a ready :class:`fsx.FaceModel` in eval mode.

    Fails with a one-line :class:`CheckpointError` for a missing, truncated or corrupt file, a file that is not an
    fsx checkpoint, an attribute whose plugin is not installed, or an attribute whose dim disagrees with it.
    """
    from fsx.config import ModelConfig
    from fsx.model import FaceModel
    from fsx.plugins import UnknownAttributeError, get_registry

    meta = read_metadata(path)
    registry = registry or get_registry()
    try:
        config = ModelConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its model config is invalid: {exc}") from None
    for slot in config.attributes:
        where = f"package {slot.package} {slot.version}".strip()
        try:
            installed = registry.get(slot.name)
        except UnknownAttributeError:
            raise CheckpointError(
                f"{path}: attribute {slot.name!r} ({where}) is not installed; install the plugin that provides it"
            ) from None
        if installed.dim != slot.dim:
            raise CheckpointError(
                f"{path}: attribute {slot.name!r} has dim {slot.dim} in the checkpoint ({where}) but the installed "
                f"plugin (package {installed.package} {installed.version}) declares dim {installed.dim}"
            )
    try:
        model = FaceModel(config, metadata=meta.get("info") if isinstance(meta.get("info"), dict) else {})
    except KeyError as exc:  # e.g. a backbone name that no installed package registers
        raise CheckpointError(f"{path}: cannot build its model: {exc.args[0] if exc.args else exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build its model: {exc}") from None
    tensors = load_tensors(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensors do not match the model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [k for k, t in tensors.items() if t.shape != expected[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{path}: tensor {k!r} has shape {tuple(tensors[k].shape)}, the model expects {tuple(expected[k].shape)}"
        )
    nonfinite = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if nonfinite:  # a NaN or Inf weight would encode every picture as NaN without a word
        raise CheckpointError(f"{path}: tensor {nonfinite[0]!r} holds NaN or Inf values ({len(nonfinite)} tensor(s) "
                              f"do); the file is damaged or its training diverged")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()
