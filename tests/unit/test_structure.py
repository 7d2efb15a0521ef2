"""The shape the code keeps: apps import each other one way, and every task a service names
exists."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dataspace"


def _unit(module: str) -> str:
    """The app a module belongs to (``dataspace.compute.he.store`` -> ``compute``), or the
    project-level module itself (``dataspace.tasking`` -> ``tasking``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every dataspace module this file imports, at any depth (a lazy import is an edge too)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("dataspace.")}


def app_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        source = _unit(module)
        for target in _imports(path, module):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `from pkg.mod import name`
            if target in modules and _unit(target) != source:
                graph[source].add(_unit(target))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_apps_import_each_other_one_way() -> None:
    cycle = _cycle(app_graph())
    assert cycle is None, "import cycle between apps: " + " -> ".join(cycle or [])


def test_leaf_modules_import_nothing_of_ours() -> None:
    graph = app_graph()
    for leaf in ("operation_names", "canonical"):
        assert not graph.get(leaf), f"dataspace.{leaf} should be a leaf, imports {graph[leaf]}"


def test_the_policies_do_not_know_the_engines() -> None:
    assert "compute" not in app_graph()["policies"]


def _enqueued_task_names() -> set[str]:
    """Every task name passed to tasking.enqueue*/a *_TASK constant or STEP_TASKS in the code."""
    names: set[str] = set()
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value.startswith("dataspace.") and ".tasks." in value and not value.endswith("*"):
                    names.add(value)
    return names


@pytest.mark.django_db
def test_every_task_named_in_the_code_is_registered() -> None:
    from dataspace.celery import app

    app.loader.import_default_modules()
    app.autodiscover_tasks(force=True)
    names = _enqueued_task_names()
    assert len(names) >= 12
    assert names - set(app.tasks) == set()
