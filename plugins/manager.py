"""Find plugins, call their hooks, validate what they declare, and keep the result in one registry.

Every problem is reported with the plugin and package it came from; a broken third-party plugin is left
out and listed in ``registry.problems`` while the rest (the built-ins among them) keep working.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import time
from typing import Iterable, Sequence

import attrs
import pluggy

from fsx.attributes.base import Attribute
from fsx.backbones.registry import BackboneRegistry
from fsx.plugins import builtin, hookspecs
from fsx.version import __version__

ENTRY_POINT_GROUP = "fsx"
# Every fsx command builds the registry, so a plugin slower than this to import and register is named each time.
SLOW_PLUGIN_S = 1.0


class PluginError(RuntimeError):
    """A plugin could not be loaded or declared something invalid."""


class UnknownAttributeError(KeyError):
    """An attribute name or alias that no installed plugin provides."""

    def __init__(self, name: str, known: Sequence[str], problems: Sequence = ()):
        self.name, self.known, self.problems = name, tuple(known), tuple(problems)
        super().__init__(name)

    def __str__(self) -> str:
        same = [p for p in self.problems if p.plugin == self.name.strip().lower()]
        if same:  # the plugin that would provide it is installed but broken: say so, not "unknown"
            p = same[0]
            return f"attribute {self.name!r} is not available: plugin {p.plugin!r} (package {p.package}) failed: {p.message}"
        failed = f"; plugins that failed to load: {'; '.join(map(str, self.problems))}" if self.problems else ""
        return f"unknown attribute {self.name!r}; known: {', '.join(self.known)}{failed}"


@attrs.frozen
class PluginProblem:
    plugin: str
    package: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (package {self.package}): {self.message}"


@attrs.frozen
class _Source:
    """Where a hook implementation came from."""

    plugin: str
    package: str
    version: str


@attrs.define
class PluginRegistry:
    """What the plugins declared: attributes by name and alias, networks by name, and the problems met while
    loading them."""

    attributes: dict = attrs.field(factory=dict)  # name -> Attribute
    aliases: dict = attrs.field(factory=dict)  # alias or name -> name
    backbones: BackboneRegistry = attrs.field(factory=BackboneRegistry)
    problems: list = attrs.field(factory=list)
    slow: list = attrs.field(factory=list)  # "plugin 'x' (package y 1.0) took 2.3 s to load" for each slow one

    def names(self) -> list[str]:
        return list(self.attributes)

    def get(self, name: str):
        key = name.strip().lower()
        if key not in self.aliases:
            raise UnknownAttributeError(name, self.known_names(), self.problems)
        return self.attributes[self.aliases[key]]

    def canonical(self, name: str) -> str:
        """The attribute name behind a name or alias; an unknown name comes back unchanged (for a caller that
        reports it later, with the context it has)."""
        return self.aliases.get(name.strip().lower(), name)

    def known_names(self) -> list[str]:
        out = []
        for name, attr in self.attributes.items():
            out.append(name + (f" ({', '.join(attr.aliases)})" if attr.aliases else ""))
        return out

    def resolve(self, names: str | Iterable[str]) -> list:
        """Attributes for a comma-separated string or a list of names/aliases, in the order given."""
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        out, seen = [], set()
        for n in names:
            attr = self.get(n)
            if attr.name in seen:
                raise ValueError(f"attribute {attr.name!r} given twice")
            seen.add(attr.name)
            out.append(attr)
        if not out:
            raise ValueError("no attributes given")
        return out

    def _add(self, attr, source: _Source) -> None:
        if not isinstance(attr, Attribute):
            raise PluginError(f"fsx_register_attributes returned {type(attr).__name__}, not fsx.attributes.Attribute")
        for key in (attr.name, *attr.aliases):
            if key in self.aliases:
                owner = self.attributes[self.aliases[key]]
                raise PluginError(
                    f"attribute {attr.name!r}: name {key!r} is already taken by attribute {owner.name!r} "
                    f"from package {owner.package}"
                )
        attr = attrs.evolve(attr, package=source.package, version=source.version)
        self.attributes[attr.name] = attr
        for key in (attr.name, *attr.aliases):
            self.aliases[key] = attr.name


def _entry_point_sources(pm: pluggy.PluginManager, problems: list, timings: dict) -> dict:
    """Import each ``fsx`` entry point on its own, so one that fails to import does not stop the others; how long
    each import took goes into ``timings``."""
    sources = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        package = dist.name if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        started = time.perf_counter()
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=ep.name)
        except (Exception, SystemExit) as exc:  # a plugin's bug (or its sys.exit) must not take fsx down
            problems.append(PluginProblem(ep.name, f"{package} {version}", f"failed to load: {type(exc).__name__}: {exc}"))
            continue
        sources[id(plugin)] = _Source(ep.name, package, version)
        timings[id(plugin)] = time.perf_counter() - started
    return sources


def load_registry(plugins: Iterable[object] = (), entry_points: bool = True) -> PluginRegistry:
    """Build a fresh registry: the built-ins, then every ``fsx`` entry point, then ``plugins`` (objects or
    modules with hook implementations, handy in tests and notebooks)."""
    pm = pluggy.PluginManager("fsx")
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry()
    pm.register(builtin, name="builtin")
    sources = {id(builtin): _Source("builtin", "fsx", __version__)}
    seconds: dict = {}  # plugin -> seconds spent importing it and calling its hooks
    if entry_points:
        sources.update(_entry_point_sources(pm, registry.problems, seconds))
    for plugin in plugins:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        pm.register(plugin, name=name)
        sources[id(plugin)] = _Source(name, getattr(plugin, "__module__", name) or name, "")

    # Hook implementations are called one at a time (in registration order) so a failure is attributed.
    by_registration = lambda impl: list(sources).index(id(impl.plugin))  # noqa: E731
    for impl in sorted(pm.hook.fsx_register_attributes.get_hookimpls(), key=by_registration):
        src = sources[id(impl.plugin)]
        where = f"{src.package} {src.version}".strip()
        started = time.perf_counter()
        try:
            declared = impl.function()
            if declared is None:
                declared = []
            if not isinstance(declared, (list, tuple)):
                raise PluginError(f"fsx_register_attributes must return a list, got {type(declared).__name__}")
            for attr in declared:
                try:
                    registry._add(attr, src)
                except PluginError as exc:
                    registry.problems.append(PluginProblem(src.plugin, where, str(exc)))
        except (Exception, SystemExit) as exc:  # SystemExit: a hook that calls sys.exit is a broken plugin too
            registry.problems.append(PluginProblem(src.plugin, where, f"{type(exc).__name__}: {exc}"))
        seconds[id(impl.plugin)] = seconds.get(id(impl.plugin), 0.0) + time.perf_counter() - started

    for impl in sorted(pm.hook.fsx_register_backbones.get_hookimpls(), key=by_registration):
        src = sources[id(impl.plugin)]
        started = time.perf_counter()
        try:
            for name, factory in (impl.function() or {}).items():
                registry.backbones.register_backbone(name, factory, src.package)
        except (Exception, SystemExit) as exc:
            registry.problems.append(PluginProblem(src.plugin, f"{src.package} {src.version}".strip(), f"{type(exc).__name__}: {exc}"))
        seconds[id(impl.plugin)] = seconds.get(id(impl.plugin), 0.0) + time.perf_counter() - started
    for key, spent in seconds.items():
        if spent > SLOW_PLUGIN_S and key != id(builtin):
            src = sources[key]
            registry.slow.append(f"plugin {src.plugin!r} (package {f'{src.package} {src.version}'.strip()}) took "
                                 f"{spent:.1f} s to load; every fsx command waits for it")
    return registry


@functools.lru_cache(maxsize=1)
def get_registry() -> PluginRegistry:
    """The process-wide registry (built once, on first use)."""
    return load_registry()


def create_backbone(name: str, **kwargs):
    """Build the network ``name`` from the process-wide registry (fsx's own and every plugin's networks)."""
    return get_registry().backbones.create_backbone(name, **kwargs)


def list_backbones() -> list[str]:
    return get_registry().backbones.list_backbones()


def attribute_table(registry: PluginRegistry) -> tuple[list[dict], list[str]]:
    """What ``fsx plugins`` lists: one row per attribute (name, aliases, dim, labels, how its batches are sampled,
    package), and the problems met while loading plugins."""
    rows = [{"name": a.name, "aliases": list(a.aliases), "dim": a.dim, "labels": list(a.label_names),
             "sampler": " x ".join(f"{c} {g}" for g, c in zip(a.sampler.group_by, a.sampler.counts)) or "random",
             "package": f"{a.package} {a.version}".strip()} for a in registry.attributes.values()]
    return rows, [str(p) for p in registry.problems]
