"""Runs kept between benchmark runs, reused while nothing they depend on has changed.

Every run of a search benchmark is deterministic on one machine: the same
problem, method, seed and budget give the same losses until the method's
code, the problems' or the libraries change. Section 14 makes 2,550 of them
in an hour; most are unchanged from one run to the next (the rivals' always,
unless a library moved), and a text fix should not cost the hour. A run is
kept under its cell (problem, method, seed, budget) on a shelf, a file
stamped with a fingerprint of what its methods depend on; a stamp that no
longer matches empties the shelf, so a stale run is never reused. Python is
fingerprinted as its syntax tree without docstrings: a comment, a docstring
or a line wrapped differently changes no run, and no longer empties a shelf.
Of a package, only the modules the runs import count (``imported``): kubetune's
CLI or Kubernetes client can change without emptying its shelf.

The shelves are kept in git (bench/data/kept-runs, beside the real
evaluations the problems read, bench/data/suite-tables.json): a fresh clone
makes only the runs its change touched (a change to kubetune's search, its
own 1,670 of sections 14 and 15, not the rivals' 1,840), and the sections'
tables can be checked against the runs they were made from. A kept run may
come from another machine than the section's machine line, which is that of
the run that rendered it. Remade on an AMD EPYC, the runs an Intel Xeon had
made gave the same figures in every table for every method but Optuna GP,
whose torch fits took other paths (BENCHMARKS.md sections 14 and 15,
2026-12-07).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("numpy", "scipy", "scikit-learn", "scikit-optimize", "optuna", "torch", "greenlet")

Cell = tuple[str, str, int, int]  # problem, method, seed, budget


def fingerprint(code: Iterable[Callable[..., Any]], files: Iterable[Path | None]) -> str:
    """A digest of the runners' source, the files that define the problems (None: one that defines
    none here, as an absent one), and the libraries' versions."""
    digest = hashlib.sha256()
    for fn in code:
        digest.update(_syntax(inspect.getsource(fn)))
    for path in files:
        if path is None or not path.exists():
            digest.update(b"absent")
        else:
            digest.update(_syntax(path.read_text()) if path.suffix == ".py" else path.read_bytes())
    for name in LIBRARIES:
        try:
            digest.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent".encode())
    return digest.hexdigest()


def imported(roots: Iterable[Path], package: Path) -> list[Path]:
    """The files of ``package`` (a directory on the import path) that ``roots`` import, directly or
    through one another, by any import statement (a function's too), each with its packages'
    ``__init__.py``: what a run of code in ``roots`` can execute of it, where the package has no
    import by name at run time (``importlib``)."""
    found: set[Path] = set()
    todo = [root for root in roots if root.exists()]  # an absent one imports nothing
    while todo:
        for name in _imports(todo.pop()):
            for path in _files(name, package):
                if path not in found:
                    found.add(path)
                    todo.append(path)
    return sorted(found)


def _imports(path: Path) -> Iterator[str]:
    """Every absolute module name an import statement in ``path`` names, ``from m import n``'s
    ``m.n`` too (n may be a submodule)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def _files(name: str, package: Path) -> Iterator[Path]:
    """The files of ``package`` that importing ``name`` runs: the module's and each package's above it."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        at = package.parent.joinpath(*parts[:end])
        yield from (
            p for p in (at / "__init__.py", at.with_suffix(".py")) if p.is_relative_to(package) and p.exists()
        )


def _syntax(source: str) -> bytes:
    """Python source as what it runs: its syntax tree (no comments, no positions), docstrings dropped."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@dataclass
class KeptRuns:
    """A shelf: the kept runs of the methods it ``holds``, under one stamp, read from and written to
    ``path``."""

    path: Path
    stamp: str
    holds: Callable[[str], bool]
    runs: dict[str, list[float]] = field(default_factory=dict)
    hits: int = 0  # runs handed out since loading: a section reports how many it did not make

    @classmethod
    def load(cls, path: Path, stamp: str, holds: Callable[[str], bool]) -> KeptRuns:
        """The runs kept at ``path`` under ``stamp``; none where the file is absent or stamped otherwise."""
        saved = json.loads(path.read_text()) if path.exists() else {}
        return cls(path, stamp, holds, saved.get("runs", {}) if saved.get("stamp") == stamp else {})

    def get(self, cell: Cell) -> list[float] | None:
        runs = self.runs.get(_key(cell))
        self.hits += runs is not None
        return runs

    def keep(self, found: Sequence[tuple[Cell, list[float]]]) -> None:
        """Add runs and write the file (whole, then renamed: a killed benchmark leaves the old one)."""
        if not found:
            return
        self.runs.update((_key(cell), losses) for cell, losses in found)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"stamp": self.stamp, "runs": self.runs}))
        partial.replace(self.path)


def _key(cell: Cell) -> str:
    return json.dumps(list(cell))
