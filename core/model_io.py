"""A :class:`fsx.FaceModel` to and from a safetensors file: its weights, and the JSON metadata (configuration,
attributes with their packages, training info) that rebuilds it."""

from __future__ import annotations

import json
import os

import torch

from fsx.checkpoint import FORMAT, CheckpointError, load_tensors, read_metadata, save_tensors
from fsx.config import ModelConfig
from fsx.model import FaceModel
from fsx.plugins import UnknownAttributeError, get_registry
from fsx.version import __version__


def save_model(model, path: str | os.PathLike, **extra) -> None:
    """Save a :class:`fsx.FaceModel`: its weights and the metadata needed to rebuild it.

    ``extra`` (e.g. ``data="synthfaces"``, ``preset="demo"``, ``steps={...}``) is merged into
    ``model.metadata`` and stored, so a checkpoint says what it was trained on and for how long.
    """
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
        model = FaceModel(config, metadata=meta.get("info") if isinstance(meta.get("info"), dict) else {},
                          registry=registry)
    except KeyError as exc:  # e.g. a backbone name that no installed package registers
        raise CheckpointError(f"{path}: cannot build its model: {exc.args[0] if exc.args else exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build its model: {exc}") from None
    tensors = load_tensors(path)
    expected = model.state_dict()
    # a file from before the code Gaussian lacks its buffers; the AAE fills them in (AAE._load_from_state_dict)
    optional = {f"aae.{name}" for name in model.aae.standard_codes()}
    missing = sorted(set(expected) - set(tensors) - optional)
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


def describe(meta: dict) -> list[str]:
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
        f"disentangler: {cfg.get('disentangler', 'mlp')}",
        "attributes:",
    ]
    for a in meta["attributes"]:
        lines.append(f"  {a['name']:<12} dim {a['dim']:<4} from {a.get('package', '')} {a.get('version', '')}".rstrip())
    info = meta.get("info") or {}
    for key, value in sorted(info.items()):
        lines.append(f"{key + ':':<13}{json.dumps(value) if not isinstance(value, str) else value}")
    return lines
