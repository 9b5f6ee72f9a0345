"""The code's layout is its data flow (README "How it works"): each package
imports only the layers below it, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own layer and those before it.
LAYERS = (
    ("otel_tracer.trace", "otel_tracer.cli_parser", "otel_tracer.version"),  # the model, its files
    ("otel_tracer.stream",),  # moving events out of a running recording
    ("otel_tracer.record",),  # the cores and the recording session
    ("otel_tracer.spans",),  # the OpenTelemetry bridge
    ("otel_tracer.run",),  # running the program, following processes
    ("patterns",),  # post-processors: folding and annotating
    ("exporters",),  # outputs
    ("otel_tracer", "otel_tracer.api"),  # the Python API
    ("otel_tracer.__main__", "cli"),  # the command line
)


def layer_of(module: str) -> int | None:
    """The layer of ``module``: that of the longest prefix named in LAYERS."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    return found


def our_modules() -> dict[str, Path]:
    modules = {}
    for top in ("otel_tracer", "cli", "exporters", "patterns"):
        for path in (REPO / top).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if "bootstrap" in parts:
                continue  # runs as a sitecustomize, before our packages are importable
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``module`` imports (anywhere in the file)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {m: imports_of(m, p, set(modules)) for m, p in modules.items()}


def test_every_module_has_a_layer() -> None:
    assert [m for m in our_modules() if layer_of(m) is None] == []


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)  # type: ignore[operator]
    ]
    assert upward == []


def test_no_import_circles() -> None:
    graph = import_graph()
    # a package's __init__ importing its own submodules is not a circle of modules
    edges = {
        m: {t for t in targets if not (m and t.startswith(m + "."))} for m, targets in graph.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_every_subpackage_says_what_it_owns() -> None:
    for init in (REPO / "otel_tracer").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 60, init
