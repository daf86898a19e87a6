"""Real hyperparameter problems: scikit-learn models on the datasets it ships, tabulated once.

Evaluating a model inside the suite's loop (methods x seeds x 45 trials)
would cost hours; as section 4's CNN surrogate does, the benchmark queries a
table of real evaluations instead: every point of a fixed grid over the
space, evaluated by cross-validation (fixed folds and model seeds, so a grid
point has one value), kept in git (bench/data/suite-tables.json). A point
between grid points gets the linear interpolation of its neighbours, in
log10 along log-scaled axes; a categorical value is always on the grid. The
optimum is the best grid value (a linear interpolation's minimum lies on a
node). Nothing is downloaded: load_digits and load_breast_cancer ship with
scikit-learn.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from bench.common import KEPT_DATA, log
from bench.search_problems import Problem
from bench.suite_problems import target
from kubetune.contract import Params, ParamValue
from kubetune.spec import Categorical, Dimension, Integer, Real

TABLES_FILE = KEPT_DATA / "suite-tables.json"
FOLDS = 3


@dataclass(frozen=True)
class Axis:
    dim: Dimension
    grid: tuple[ParamValue, ...]
    log: bool = False

    def coordinate(self, value: ParamValue) -> float:
        if isinstance(self.dim, Categorical):
            return float(self.grid.index(value))
        return math.log10(float(value)) if self.log else float(value)


class Table:
    """A loss over a grid, linearly interpolated between its nodes."""

    def __init__(self, axes: Sequence[Axis], values: Sequence[float]) -> None:
        self.axes = tuple(axes)
        shape = tuple(len(a.grid) for a in axes)
        grids = [np.array([a.coordinate(v) for v in a.grid]) for a in axes]
        self.values = np.asarray(values, dtype=float).reshape(shape)
        self._interpolate = RegularGridInterpolator(grids, self.values, bounds_error=False, fill_value=None)

    def __call__(self, p: Params) -> float:
        return float(self._interpolate([[a.coordinate(p[a.dim.name]) for a in self.axes]])[0])


def nodes(axes: Sequence[Axis]) -> list[Params]:
    """Every grid point, in the table's (C) order."""
    grids = np.meshgrid(*[np.arange(len(a.grid)) for a in axes], indexing="ij")
    return [{a.dim.name: a.grid[int(i)] for a, i in zip(axes, idx, strict=True)}
            for idx in zip(*(g.ravel() for g in grids), strict=True)]  # fmt: skip


def tabulated(name: str, axes: Sequence[Axis], evaluate: Callable[[Params], float], path: Path) -> Table:
    """The table of ``evaluate`` over the grid, from the cache or evaluated (and cached) now."""
    cache: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
    grid = [list(a.grid) for a in axes]
    entry = cache.get(name)
    if entry is None or entry["grid"] != grid:
        points = nodes(axes)
        log(f"suite: evaluating {name} at {len(points)} grid points")
        entry = {"grid": grid, "values": [evaluate(p) for p in points]}
        cache[name] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)  # a killed run never leaves half a cache
    values = entry["values"]
    assert isinstance(values, list)
    return Table(axes, values)


def svm_error(p: Params) -> float:
    """1 - 3-fold accuracy of an SVC on load_digits (pixels scaled to [0, 1])."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    svc = SVC(C=float(p["C"]), gamma=float(p["gamma"]), kernel=str(p["kernel"]))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    return 1.0 - float(cross_val_score(svc, x / 16.0, y, cv=folds).mean())


def hgb_log_loss(p: Params) -> float:
    """3-fold log-loss of HistGradientBoostingClassifier (100 iterations) on load_breast_cancer."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(
        learning_rate=float(p["learning_rate"]),
        max_leaf_nodes=int(p["max_leaf_nodes"]),
        min_samples_leaf=int(p["min_samples_leaf"]),
        l2_regularization=float(p["l2_regularization"]),
        max_iter=100,
        early_stopping=False,
        random_state=0,
    )
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    return -float(cross_val_score(model, x, y, cv=folds, scoring="neg_log_loss").mean())


def _decades(low: float, high: float, per_decade: float) -> tuple[float, ...]:
    n = round(math.log10(high / low) * per_decade) + 1
    return tuple(float(v) for v in np.logspace(math.log10(low), math.log10(high), n))


def svm_axes(smoke: bool) -> list[Axis]:
    per = 1 / 6 if smoke else 2  # grid points per decade
    return [
        Axis(Real("C", 1e-2, 1e4, "log-uniform"), _decades(1e-2, 1e4, per), log=True),
        Axis(Real("gamma", 1e-5, 1e1, "log-uniform"), _decades(1e-5, 1e1, per), log=True),
        Axis(Categorical("kernel", ("rbf", "poly", "sigmoid")), ("rbf", "poly", "sigmoid")),
    ]


def hgb_axes(smoke: bool) -> list[Axis]:
    return [
        Axis(
            Real("learning_rate", 1e-2, 1.0, "log-uniform"),
            _decades(1e-2, 1.0, 0.5 if smoke else 3),
            log=True,
        ),
        Axis(Integer("max_leaf_nodes", 2, 64), (2, 64) if smoke else (2, 4, 8, 16, 32, 64), log=True),
        Axis(Integer("min_samples_leaf", 1, 64), (1, 64) if smoke else (1, 4, 16, 64), log=True),
        Axis(
            Real("l2_regularization", 1e-3, 10.0, "log-uniform"),
            _decades(1e-3, 10.0, 0.25 if smoke else 0.5),
            log=True,
        ),
    ]


def table_problem(
    name: str, axes: Sequence[Axis], evaluate: Callable[[Params], float], path: Path
) -> Problem:
    t = tabulated(name, axes, evaluate, path)
    space = tuple(a.dim for a in axes)
    optimum = float(t.values.min())
    return Problem(name, space, t, optimum, target(space, t, optimum))


TABLES: dict[str, tuple[Callable[[bool], list[Axis]], Callable[[Params], float]]] = {
    "svm_digits": (svm_axes, svm_error),
    "hgb_cancer": (hgb_axes, hgb_log_loss),
}


def problems(names: Sequence[str], path: Path = TABLES_FILE, smoke: bool = False) -> dict[str, Problem]:
    """The named real problems; a table is evaluated on first use (about 3 min on one core for
    both), then read from ``path``. ``smoke``: two grid points per numeric axis."""
    return {n: table_problem(n, TABLES[n][0](smoke), TABLES[n][1], path) for n in names}
