"""The search benchmark's problems: synthetic functions with known optima, and the CNN's surrogate.

Each problem is a kubetune space (so ``suggest`` searches it exactly as a
study would), a loss to minimize, the loss's known minimum, and how close to
it counts as reaching the target. ``observe`` is what a method sees (noisy
for the CNN, as a real trial is); ``truth`` is what the regret is measured on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.search_cnn import Surrogate
from kubetune.contract import Params
from kubetune.spec import Categorical, Dimension, Integer, Real


@dataclass(frozen=True)
class Problem:
    name: str
    space: tuple[Dimension, ...]
    truth: Callable[[Params], float]
    optimum: float
    target: float  # regret at or below which the target is reached
    x0: tuple[Params, ...] = ()
    noise: Callable[[Params, int, int], float] | None = None  # (point, seed, trial index) -> noise

    def observe(self, point: Params, seed: int, index: int) -> float:
        extra = self.noise(point, seed, index) if self.noise else 0.0
        return self.truth(point) + extra


def branin(p: Params) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(p: Params) -> float:
    x = np.array([float(p[f"x{i}"]) for i in range(1, 7)])
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


_SHIFT = {"a": 0.6, "b": 0.0, "c": 0.3, "d": 0.9}


def mixed(p: Params) -> float:
    """Six-hump camel in two reals, plus an integer's and a categorical's offsets (minimum at n=13, c=b)."""
    x, y = float(p["x"]), float(p["y"])
    camel = (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2
    return camel + ((int(p["n"]) - 13) / 10) ** 2 + _SHIFT[str(p["c"])]


SYNTHETIC = {
    "branin": Problem("branin", (Real("x1", -5.0, 10.0), Real("x2", 0.0, 15.0)), branin, 0.397887, 0.01),
    "hartmann6": Problem(
        "hartmann6", tuple(Real(f"x{i}", 0.0, 1.0) for i in range(1, 7)), hartmann6, -3.32237, 0.1
    ),
    "mixed": Problem(
        "mixed",
        (
            Real("x", -3.0, 3.0),
            Real("y", -2.0, 2.0),
            Integer("n", 0, 20),
            Categorical("c", ("a", "b", "c", "d")),
        ),
        mixed,
        -1.031628,
        0.05,
    ),
}
NOTEBOOK_X0: Params = {"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12}


def cnn_problem(s: Surrogate) -> Problem:
    """Loss = -accuracy; the target is one seed-to-seed standard deviation from the surrogate's best."""
    space = (
        Real("learning_rate", 1e-5, 1e-1, "log-uniform"),
        Integer("num_dense_layers", 1, 5),
        Integer("num_dense_nodes", 5, 512),
    )

    def noise(point: Params, seed: int, index: int) -> float:
        return -(s.noisy(point, seed, index) - float(s.mean([point])[0]))

    return Problem(
        "cnn", space, lambda p: -float(s.mean([p])[0]), -s.best, max(s.noise_sd, 0.005), (NOTEBOOK_X0,), noise
    )
