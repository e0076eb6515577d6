"""The package's layering (docs/architecture.md), read from the source: no module imports a higher layer,
no import cycle (lazy imports inside functions count; ``if TYPE_CHECKING:`` blocks do not), and no function
grows past the length limit."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Low to high: a module may import its own layer and the layers before it. Command modules (``cli``,
#: ``*commands``, the package root with its public API) sit on top and may import anything.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("personsearch.errors", "personsearch.outputs", "personsearch.argtypes", "personsearch.config_schema",
     "personsearch.config_types", "personsearch.config", "personsearch.__version__"),
    ("personsearch.data",),
    ("personsearch.models", "personsearch.evaluation"),
    ("personsearch.engine",),
    ("personsearch.distill", "personsearch.search"),
    ("personsearch.export",),
    ("personsearch.footage",),
    ("personsearch.serve",),
)  # fmt: skip
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in (SRC / "personsearch").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _is_command(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    top = ("personsearch", "personsearch.cli", "personsearch.__main__", "personsearch.commandline")
    return module in top or last.endswith("commands")


def _layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py (add it, and to the docs)")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports (``from pkg import name`` counts as ``pkg.name`` when that is
    a module); ``from personsearch import __version__`` is the version constant, not the API."""
    path, is_package = MODULES[module]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in MODULES or name == "personsearch.__version__" else base)
    return {m for m in found if m.startswith("personsearch") and m != module}


GRAPH = {m: _imports(m) for m in MODULES}


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in sorted(GRAPH.items())
        if not _is_command(m)
        for d in sorted(deps)
        if not _is_command(d) and _layer(d) > _layer(m)
    ]
    assert not upward, "\n".join(upward)
    into_commands = [
        f"{m} imports {d}" for m, deps in GRAPH.items() if not _is_command(m) for d in deps if _is_command(d)
    ]
    assert not into_commands, "library modules must not import command modules:\n" + "\n".join(into_commands)


def test_no_import_cycle() -> None:
    graph = {m: {d for d in deps if d in MODULES} for m, deps in GRAPH.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_functions_stay_short() -> None:
    root = SRC
    long = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(sorted(long))
