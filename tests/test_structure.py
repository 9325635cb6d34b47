"""The package's shape, read from its source with ``ast``: imports flow one way, in layers, with no cycle; and
the core's functions stay short enough to read."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Bottom to top; a module may import its own layer (without a cycle) or any layer below, never one above.
LAYERS = [
    ("fsx.version", "fsx.sizes", "fsx.layout", "fsx.config", "fsx.checkpoint", "fsx.folder_lock"),
    ("fsx.backbones", "fsx.attributes", "fsx.losses", "fsx.onet", "fsx.perceptual"),
    ("fsx.plugins",),
    ("fsx.aae", "fsx.disentangler", "fsx.model", "fsx.model_io"),
    ("fsx.data",),
    ("fsx.eval", "fsx.embeddings"),
    ("fsx.train",),
    ("fsx.cli_support", "fsx.commands", "fsx.model_commands", "fsx.cli", "fsx.__main__"),
]


def modules() -> dict[str, pathlib.Path]:
    # pyproject's one-line package-dir table (read with a pattern: tomllib is not in Python 3.10)
    line = next(ln for ln in (ROOT / "pyproject.toml").read_text().splitlines() if ln.startswith("package-dir"))
    dirs = dict(re.findall(r'"([\w.]+)"\s*=\s*"([\w/]+)"', line))
    out = {}
    for package, folder in dirs.items():
        for f in (ROOT / folder).glob("*.py"):
            out[package if f.stem == "__init__" else f"{package}.{f.stem}"] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the fsx modules it imports (anywhere in it: module level or inside a function)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.stem == "__init__" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rpartition(".")[0]
                if t in mods and t != mod and t.startswith("fsx"):
                    graph[mod].add(t)
    return graph


def layer(module: str) -> int:
    if module == "fsx":  # the package: it gathers the public API from below
        return len(LAYERS) - 1
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py; place it")


def test_every_module_has_a_layer_and_imports_none_above_it():
    graph = import_graph()
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, ts in graph.items() for t in ts
              if t != "fsx" and layer(t) > layer(m)]
    # the package itself (fsx/__init__) re-exports the public API: nothing inside fsx may import it
    via_package = [f"{m} imports the package fsx" for m, ts in graph.items() for t in ts if t == "fsx"]
    assert not upward + via_package, "\n".join(upward + via_package)


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles = []

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_a_cycle_is_found_where_there_is_one(tmp_path, monkeypatch):
    """The walk above finds a real cycle (two modules of a throwaway package that import each other)."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text("from fsx.b import x\n")
    (tmp_path / "core" / "b.py").write_text("def f():\n    from fsx import a\n")
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "fsx" = "core" }\n')
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="fsx.a -> fsx.b -> fsx.a"):
        test_no_import_cycle()


def test_no_function_in_core_is_over_60_lines():
    long = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, "\n".join(long)
    assert len((ROOT / "core" / "commands.py").read_text().splitlines()) < 350
