"""A named registry of networks, in the spirit of timm's ``register_model`` / ``create_model``."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make ``fn`` available as ``create_backbone(fn.__name__, ...)``."""
    if fn.__name__ in _BACKBONES:
        raise ValueError(f"backbone {fn.__name__!r} is registered twice")
    _BACKBONES[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    """Built-in names plus those contributed by plugins through ``fsx_register_backbones``."""
    from fsx.plugins import get_registry

    return sorted(set(_BACKBONES) | set(get_registry().backbones))


def create_backbone(name: str, **kwargs) -> nn.Module:
    """Build the network registered under ``name`` with the given keyword arguments."""
    if name in _BACKBONES:
        return _BACKBONES[name](**kwargs)
    from fsx.plugins import get_registry

    plugin = get_registry().backbones.get(name)
    if plugin is None:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return plugin[0](**kwargs)


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 8, so tiny test models stay valid)."""
    return max(8, int(round(channels * width)))


SUPPORTED_SIZES = (32, 64, 128, 256)


def check_size(image_size: int) -> int:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")
    return image_size.bit_length() - 3  # log2(size / 4): the number of 2x steps between 4x4 and the image
