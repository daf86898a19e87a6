"""The layers, enforced: two images share only the contract, and packages keep their privates.

Read from the source (every import, at any depth of a module, counts), so a
lazy import inside a function cannot slip through. The trial image installs
neither kubernetes nor scikit-optimize, the controller image no TensorFlow.
"""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path

import pytest

from kubetune.kinds import BUILT_IN
from tests import REPO

PACKAGE = REPO / "kubetune"

TRIAL_SIDE = "kubetune.trial"
CONTROLLER_SIDE = ("kubetune.controller", "kubetune.launcher", "kubetune.kubernetes")
NEVER_IN_TRIAL = ("kubernetes", "skopt", "sklearn", "scipy", "matplotlib", *CONTROLLER_SIDE)
NEVER_IN_CONTROLLER = ("tensorflow", "keras", "tensorflow_datasets", TRIAL_SIDE)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(folder: Path) -> list[Path]:
    """The Python files of a source folder, not those in its caches and scratch folders
    (bench/.cache holds a benchmark's node, and the containers' own Python, while it runs)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # never walked into
        found += [Path(root, f) for f in files if f.endswith(".py")]
    return sorted(found)


MODULES = {module_name(p): p for p in sources(PACKAGE)}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module ``module`` imports, anywhere in its body (``from p import m``: p, and p.m if a module)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return frozenset(found)


def closure(module: str) -> set[str]:
    """What importing ``module`` can import: its own imports and, through kubetune's modules, theirs."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in imports(todo.pop()):
            if name in seen:
                continue
            seen.add(name)
            # Importing a.b.c runs a and a.b first.
            parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
            todo += [m for m in (*parents, name) if m in MODULES]
    return seen


def offending(module: str, banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in closure(module) if any(n == b or n.startswith(b + ".") for b in banned))


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(TRIAL_SIDE)])
def test_the_trial_side_never_reaches_the_controller_or_its_libraries(module: str) -> None:
    assert offending(module, NEVER_IN_TRIAL) == []


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(CONTROLLER_SIDE)])
def test_the_controller_side_never_reaches_tensorflow(module: str) -> None:
    assert offending(module, NEVER_IN_CONTROLLER) == []


def test_shared_modules_reach_neither_side() -> None:
    # The CLI dispatches to both; the contract suites (kubetune.testing) hold any launcher to its contract.
    shared = [
        m
        for m in MODULES
        if not m.startswith((TRIAL_SIDE, *CONTROLLER_SIDE, "kubetune.cli", "kubetune.testing"))
    ]
    reached = {m: offending(m, NEVER_IN_TRIAL + NEVER_IN_CONTROLLER) for m in shared}
    assert {m: found for m, found in reached.items() if found} == {}


ALL_SOURCES = [*sources(PACKAGE), *sources(REPO / "bench"), *sources(REPO / "tests")]


@pytest.mark.parametrize("path", ALL_SOURCES, ids=str)
def test_no_module_imports_another_packages_private_module(path: Path) -> None:
    importer = module_name(path)
    own_package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    private = [
        name
        for name in _all_imports(path)
        if name.startswith(FIRST_PARTY)
        and any(_private(part) for part in name.split(".")[1:])
        and not own_package.startswith(_owner(name))
    ]
    assert private == []


FIRST_PARTY = ("kubetune.", "tests.", "bench.")


def test_no_import_circles_in_the_package_or_the_benchmarks() -> None:
    """Every import counts, lazy or for type checking alone: a circle is a design knot either way."""
    graph = {m: _first_party_imports(m, p) for m, p in {**MODULES, **BENCH}.items()}
    assert _circles(graph) == []


BENCH = {module_name(p): p for p in sources(REPO / "bench")}


def _first_party_imports(module: str, path: Path) -> set[str]:
    known = {**MODULES, **BENCH}
    found = imports(module) if module in MODULES else _plain_imports(path)
    return {name for name in found if name in known and name != module}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_check_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _all_imports(path: Path) -> set[str]:
    return set(imports(module_name(path))) if path.is_relative_to(PACKAGE) else _plain_imports(path)


def _plain_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _private(part: str) -> bool:
    """``_name`` is private; ``__main__`` (a package's entry point) is not."""
    return part.startswith("_") and not part.endswith("__")


def _owner(name: str) -> str:
    """The package a private name belongs to: everything before its first private part."""
    parts = name.split(".")
    first = next(i for i, p in enumerate(parts) if _private(p) and i > 0)
    return ".".join(parts[:first])


def test_the_rules_see_lazy_and_transitive_imports() -> None:
    # The trial's CNN imports Keras inside a function; the launcher reaches
    # the kubernetes client through its own modules: the walk must find both.
    assert "keras" in imports("kubetune.trial.cnn")
    assert "kubetune.store._gcs" in imports("kubetune.store")
    assert offending("kubetune.kubernetes.launcher", NEVER_IN_TRIAL) != []
    assert offending("kubetune.trial.runner", NEVER_IN_TRIAL) == []
    assert "tensorflow" in closure("kubetune.trial.cnn")


def test_every_built_in_kind_trains_on_the_trial_side() -> None:
    # A kind names its trainer by a string, which the import walk cannot follow: hold it here.
    for kind in BUILT_IN:
        module = kind.trainer.partition(":")[0]
        assert module.startswith(TRIAL_SIDE + ".") and module in MODULES, kind.trainer
