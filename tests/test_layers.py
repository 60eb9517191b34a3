"""The package's layers point one way (docs/ARCHITECTURE.md): an AST walk over every import in
`backend/` outside the simulators — deferred and type-only imports included — finds no circle,
no import upward, and no email platform named outside `providers/`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1] / "backend"
TOP = ("app", "cli", "routes", "worker")  # what only the process entry points may import
VENDOR_WORDS = ("mailchimp", "mailerlite", "classic")


def _module_name(path: Path) -> str:
    parts = path.relative_to(BACKEND.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in BACKEND.rglob("*.py")
            if "sandbox" not in p.relative_to(BACKEND).parts and "migrations" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imports(name, path, known)) for name, path in modules.items()}


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


def _violations(sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} → {target}" for module, imported in _graph().items()
                  if _layer(module) in sources for target in imported if _layer(target) in targets)


def test_kommo_and_providers_import_nothing_above_them():
    assert _violations(("kommo", "providers"), (*TOP, "sync")) == []


def test_sync_imports_nothing_above_it():
    assert _violations(("sync",), TOP) == []


def test_no_email_platform_is_named_in_routes_or_sync():
    found = []
    for folder in ("routes", "sync"):
        for path in (BACKEND / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    words = [w for w in VENDOR_WORDS if w in node.value.lower()]
                    found += [f"{path.relative_to(BACKEND)}:{node.lineno} {w}" for w in words]
    assert found == []
