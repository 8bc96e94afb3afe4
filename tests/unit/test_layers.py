"""The package's layers, kept by its imports.

    core < storage < service < cli        input < service
    (a module may import its own layer and the layers below it)

core is the synchronous engine and imports no other layer; input turns bytes into lines and
imports no other layer either (not even core); storage writes files of the core's values;
service wires them; cli sits on top. A module-level cycle between any two modules fails too,
type-checking imports included: a cycle is a knot a reader has to untie, whatever the runtime
does with it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streamer"

#: layer -> the layers it may import (besides itself and the package root)
ALLOWED = {
    "core": set(),
    "input": set(),
    "storage": {"core"},
    "service": {"core", "input", "storage"},
    "cli": {"core", "input", "storage", "service"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Every streamer module ``name`` imports (absolute or relative, at any depth)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "streamer" or m.startswith("streamer.")}


def resolve(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {resolve(t, known) for t in imports_of(path, name)}
        edges[name] = {t for t in targets if t and t != name and t != "streamer"}
    return edges


def test_every_module_is_in_a_layer() -> None:
    top = ("streamer", "streamer.__main__")
    loose = [m for m in modules() if m not in top and layer(m) is None]
    assert loose == [], f"modules outside core/input/storage/service/cli: {loose}"


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_point_down(module: str) -> None:
    own = layer(module)
    if own is None:
        return
    bad = sorted(t for t in graph()[module]
                 if layer(t) not in (own, None) and layer(t) not in ALLOWED[own])
    assert bad == [], f"{module} ({own}) imports an upper or sibling layer: {bad}"


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rules above are not vacuous: an upward import is found in real source."""
    src = tmp_path / "engine.py"
    src.write_text("from streamer.service.daemon import Daemon\nfrom . import units\n")
    found = imports_of(src, "streamer.core.engine")
    assert "streamer.service.daemon" in found and "streamer.core.units" in found
    assert "service" not in ALLOWED[layer("streamer.core.engine")]
