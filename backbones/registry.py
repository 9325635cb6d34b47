"""Networks by name, in the spirit of timm's ``create_model``: the names live in the plugin registry, filled by the
``fsx_register_backbones`` hook (fsx's own networks come through it too, from ``fsx.plugins.builtin``)."""

from __future__ import annotations

import inspect

import torch.nn as nn

def list_backbones() -> list[str]:
    """Every network name the registry holds: the built-ins and those of plugins (``fsx_register_backbones``)."""
    from fsx.plugins import get_registry

    return sorted(get_registry().backbones)


def create_backbone(name: str, **kwargs) -> nn.Module:
    """Build the network registered under ``name`` with the given keyword arguments."""
    from fsx.plugins import get_registry

    entry = get_registry().backbones.get(name)
    if entry is None:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    factory = entry[0]
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C factory: let it check its own arguments
        return factory(**kwargs)
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"backbone {name!r} takes no option(s) {unknown}; it takes: {', '.join(accepted)}")
    return factory(**kwargs)


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 8, so tiny test models stay valid)."""
    return max(8, int(round(channels * width)))


SUPPORTED_SIZES = (32, 64, 128, 256)


def check_size(image_size: int) -> int:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")
    return image_size.bit_length() - 3  # log2(size / 4): the number of 2x steps between 4x4 and the image
