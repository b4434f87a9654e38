"""The import graph of src/edgeship keeps its layers (docs/architecture.md) and has no circles.

Every ``import`` counts, at module level or inside a function: a lazy import still runs on the
device when the function does. The graph is read from the source with ``ast``, nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "edgeship"

# What each part may import, besides itself and the ground floor. Parts are top-level modules or
# packages of edgeship; anything not listed here may not be imported by anyone but the front.
GROUND = {"errors", "util", "_config", "_deps", "_routes", "photos", "__init__"}
ALLOWED: dict[str, set[str]] = {
    "bundle": set(),
    "monitor": set(),
    "runtime": {"bundle"},
    "llm": {"bundle", "monitor", "bench"},
    "targets": {"runtime", "bundle", "monitor"},
    "bench": {"runtime", "bundle", "targets", "monitor"},
    "ota": {"runtime", "bundle", "monitor"},
    "pipeline": {"runtime", "bundle", "llm"},
    "serve": {"runtime", "bundle", "monitor", "llm", "ota", "targets", "bench", "pipeline"},
    "optimize": {"runtime", "bundle", "bench", "targets"},
}
FRONT = {"cli", "commands", "demo", "__main__"}  # the CLI and demos: import anything, lazily
HOST_ONLY = {"optimize"}  # torch lives here, behind the `optimize` extra
TORCH = {"torch", "torchvision", "torch_pruning"}
# Lazy host-side imports that a device never reaches: each behind an option that needs the
# `optimize` extra and raises MissingDependencyError naming it when torch is absent.
HOST_EDGES = {
    ("edgeship.bench.runner", "edgeship.optimize.models"): "bench --vs-torch rebuilds the source model",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_pkg else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    if node.module is None:  # from . import a, b: each name may be a module
        return [f"{base}.{a.name}" for a in node.names]
    return [base]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules (edgeship's and foreign) it imports."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        module = _module_name(path)
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                targets.update(_resolve(module, is_pkg, node))
        graph[module] = targets
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Only edges between edgeship's own modules, each target trimmed to a module that exists."""
    out = {}
    for mod, targets in graph.items():
        edges = set()
        for t in targets:
            while t and t not in graph:
                t = t.rpartition(".")[0]
            if t.startswith("edgeship") and t != mod:
                edges.add(t)
        out[mod] = edges
    return out


def test_layers_are_kept():
    graph = import_graph()
    bad = []
    for mod, targets in _internal(graph).items():
        part = _part(mod)
        if part in FRONT or part in GROUND:
            if part in GROUND and any(_part(t) not in GROUND for t in targets):
                bad.append(f"{mod} (ground floor) imports {sorted(t for t in targets if _part(t) not in GROUND)}")
            continue
        assert part in ALLOWED, f"{mod}: part {part!r} has no row in ALLOWED (and docs/architecture.md)"
        for t in targets:
            tp = _part(t)
            if (mod, t) in HOST_EDGES:
                continue
            if tp != part and tp not in GROUND and tp not in ALLOWED[part]:
                bad.append(f"{mod} -> {t} ({part} may import {sorted(ALLOWED[part]) or 'only the ground floor'})")
    assert not bad, "forbidden imports:\n" + "\n".join(sorted(bad))


def test_device_side_never_imports_torch_or_optimize():
    bad = []
    for mod, targets in import_graph().items():
        part = _part(mod)
        if part in HOST_ONLY or part in FRONT:
            continue
        for t in targets:
            if (mod, t) in HOST_EDGES:
                continue
            if t.split(".")[0] in TORCH or _part(t) in HOST_ONLY and t.startswith("edgeship"):
                bad.append(f"{mod} -> {t}")
    assert not bad, "device-side modules import torch or optimize:\n" + "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = _internal(import_graph())
    # A package's __init__ re-exporting its modules is not a circle with them: drop package -> own
    # submodule edges (the submodules import their siblings directly, never the package).
    for mod, targets in graph.items():
        graph[mod] = {t for t in targets if not t.startswith(mod + ".")}
    assert _cycles(graph) == []


def test_the_graph_reader_sees_a_circle(tmp_path):
    # The checker itself must be able to fail.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
