"""The extension system: pluggy hook specifications, the plugin manager and validation."""

from fsx.plugins.hookspecs import hookimpl, hookspec
from fsx.plugins.manager import (
    AttributeRegistry,
    PluginError,
    PluginProblem,
    UnknownAttributeError,
    get_registry,
    load_registry,
)

__all__ = [
    "hookimpl",
    "hookspec",
    "AttributeRegistry",
    "PluginError",
    "PluginProblem",
    "UnknownAttributeError",
    "get_registry",
    "load_registry",
]
