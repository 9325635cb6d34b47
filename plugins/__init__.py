"""The extension system: pluggy hook specifications, the plugin manager and validation."""

from fsx.plugins.hookspecs import hookimpl, hookspec
from fsx.plugins.manager import (
    PluginError,
    PluginProblem,
    PluginRegistry,
    UnknownAttributeError,
    attribute_table,
    create_backbone,
    get_registry,
    list_backbones,
    load_registry,
)

__all__ = [
    "hookimpl",
    "hookspec",
    "PluginError",
    "PluginProblem",
    "PluginRegistry",
    "UnknownAttributeError",
    "attribute_table",
    "create_backbone",
    "get_registry",
    "list_backbones",
    "load_registry",
]
