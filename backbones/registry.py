"""Networks by name, in the spirit of timm's registry: ``registry.create_backbone("resnet18_encoder", ...)``.

The plugin manager fills one :class:`BackboneRegistry` from every ``fsx_register_backbones`` hook (fsx's own
networks come through it too, from ``fsx.plugins.builtin``); ``fsx.plugins.create_backbone`` reads that one.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn


class BackboneRegistry:
    """Network factories by name, each with the package that registered it."""

    def __init__(self):
        self.factories: dict[str, tuple[Callable[..., nn.Module], str]] = {}

    def register_backbone(self, name: str, factory: Callable[..., nn.Module], package: str = "fsx") -> None:
        if not callable(factory):
            raise ValueError(f"backbone {name!r} is not callable")
        if name in self.factories:
            raise ValueError(f"backbone {name!r} is already taken by package {self.factories[name][1]}")
        self.factories[name] = (factory, package)

    def list_backbones(self) -> list[str]:
        return sorted(self.factories)

    def create_backbone(self, name: str, **kwargs) -> nn.Module:
        """Build the network registered under ``name``; an option the factory does not take is a ValueError."""
        if name not in self.factories:
            raise KeyError(f"unknown backbone {name!r}; known: {', '.join(self.list_backbones())}")
        factory = self.factories[name][0]
        try:
            accepted = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a builtin or C factory: let it check its own arguments
            return factory(**kwargs)
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            unknown = sorted(set(kwargs) - set(accepted))
            if unknown:
                raise ValueError(f"backbone {name!r} takes no option(s) {unknown}; it takes: {', '.join(accepted)}")
        return factory(**kwargs)
