"""The package's import graph, read from the source (every import, top-level, lazy or for type checking):
no cycle, and the bottom layers never look up (model imports only model; errors imports nothing of
fixer at run time)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fixer"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module (or package) of the package that `name` names: fixer.a.b.func -> fixer.a.b."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> dict[str, int]:
    """Every fixer module `module` imports, with the line of the first import."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _owner(name) if name.startswith("fixer") else None
            if target and target not in (module, "fixer"):
                out.setdefault(target, node.lineno)
    return out


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_every_module():
    assert {"fixer.cli", "fixer.core", "fixer.errors", "fixer.model.profile", "fixer.watch"} <= set(GRAPH)
    assert "fixer.core" in GRAPH["fixer.cli"]  # lazy imports inside functions count too


def test_a_cycle_is_found_however_long_it_is():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"d": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({**graph, "c": {"d": 1}}) == []


def test_no_module_imports_itself_back_through_others():
    cycles = _cycles(GRAPH)
    described = ["; ".join(f"{a}:{GRAPH[a][b]} -> {b}" for a in cycle for b in GRAPH[a] if b in cycle)
                 for cycle in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("fixer.model")))
def test_the_model_imports_only_the_model(module):
    assert {m for m in GRAPH[module] if not m.startswith("fixer.model")} == set()


def test_errors_import_nothing_of_fixer_but_the_model_for_types():
    assert {m for m in GRAPH["fixer.errors"] if not m.startswith("fixer.model")} == set()
