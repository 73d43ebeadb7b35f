"""The package keeps its shape: layered imports without cycles, and small modules and functions.

The layers, top to bottom (an import may only point down or stay in its own package):
cli → serving → training → evals → runs → modeling → text → data → config → runtime.
The `python -m medft.<command>` shims in medft/*.py sit above cli. Function-level imports
count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "medft"
LAYERS = ["runtime", "config", "data", "text", "modeling", "runs", "evals", "training", "serving", "cli"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Modules and functions allowed over the limits, each with its reason. The list may only shrink:
# an entry that is no longer over its limit fails the test until it is removed.
ALLOWED_MODULES: dict[str, str] = {}
ALLOWED_FUNCTIONS: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The medft modules that ``name`` imports anywhere in its body (``from pkg import module`` included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "medft"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "medft":
                continue
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in known else target)
    return found - {name}


def layer_of(name: str) -> int:
    """Index in LAYERS; the root package (version only) is the bottom, the command shims the top."""
    parts = name.split(".")
    if len(parts) == 1:
        return -1
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else len(LAYERS)


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported_modules(name, path, set(modules)) & set(modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} -> {other}"
        for name, others in graph.items()
        for other in others
        if layer_of(other) > layer_of(name) and layer_of(name) < len(LAYERS)
    )


def test_every_module_sits_in_a_layer():
    stray = [n for n in all_modules() if n != "medft" and n.count(".") > 1 and n.split(".")[1] not in LAYERS]
    shims = [p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not stray, f"modules outside the layers: {stray}"
    for shim in shims:  # a command shim only hands over to its cli module
        assert len(shim.read_text(encoding="utf-8").splitlines()) <= 8, f"{shim.name} should only call medft.cli"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_only_point_down():
    assert upward_imports(import_graph()) == []


def test_runtime_imports_no_other_layer():
    graph = import_graph()
    leaks = [f"{n} -> {o}" for n, others in graph.items() if layer_of(n) == 0 for o in others if layer_of(o) > 0]
    assert leaks == []


def test_the_checks_can_fail():
    """A planted cycle and a planted upward import are found."""
    graph = {"medft.text.a": {"medft.training.b"}, "medft.training.b": {"medft.text.a"}}
    assert cycles(graph) == [["medft.text.a", "medft.training.b"]]
    assert upward_imports(graph) == ["medft.text.a -> medft.training.b"]


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules, functions = {}, {}
    for name, path in all_modules().items():
        text = path.read_text(encoding="utf-8")
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions[f"{name}.{node.name}"] = max(
                    functions.get(f"{name}.{node.name}", 0), node.end_lineno - node.lineno + 1
                )
    return modules, functions


@pytest.mark.parametrize("kind", ["module", "function"])
def test_sizes(kind):
    modules, functions = sizes()
    measured, limit, allowed = (
        (modules, MAX_MODULE_LINES, ALLOWED_MODULES)
        if kind == "module"
        else (functions, MAX_FUNCTION_LINES, ALLOWED_FUNCTIONS)
    )
    over = {name: lines for name, lines in measured.items() if lines > limit}
    assert sorted(set(over) - set(allowed)) == [], f"{kind}s over {limit} lines: {over}"
    shrunk = sorted(name for name in allowed if measured.get(name, 0) <= limit)
    assert shrunk == [], f"remove from the allow-list, now within {limit} lines: {shrunk}"
    assert all(reason.strip() for reason in allowed.values())
