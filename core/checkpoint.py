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
