"""The suite's synthetic problems: the functions the field compares black-box optimizers on.

Section 14 (bench/suite.py) runs these beside section 4's problems and the
real hyperparameter tables (bench/suite_tables.py). They are chosen for
variety, BBOB-style (Hansen et al., "Real-parameter black-box optimization
benchmarking", 2009; the Virtual Library of Simulation Experiments): smooth
and multimodal, separable and not, 2 to 10 dimensions, and the spaces
hyperparameters come in (log-scaled, integer, categorical, noisy). ``WHY``
says what each one tests. Optima that sit at the centre of the box are
shifted off it, as BBOB shifts them: a method that samples the centre first
gains nothing. Each function takes a batch of points (rows) in the box.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from skopt.space import Space

from bench.search_problems import SYNTHETIC, Problem
from kubetune.contract import Params
from kubetune.controller.search.space import point, skopt_dimensions
from kubetune.spec import Categorical, Dimension, Integer, Real, Spec

Batch = Callable[[np.ndarray], np.ndarray]  # rows of points -> their losses
TARGET_QUANTILE = 0.005  # the target: a loss only 1 in 200 random points reaches
TARGET_DRAWS = 20_000

_RNG = np.random.default_rng(2009)  # the fixed shifts and rotation: part of each problem's definition
_ROTATION = np.linalg.qr(_RNG.standard_normal((6, 6)))[0]
_ELLIPSOID_OPT = _RNG.uniform(-4, 4, 6)
_RASTRIGIN_SHIFT = _RNG.uniform(-3, 3, 5)
_ACKLEY_SHIFT = _RNG.uniform(-20, 20, 5)


def ellipsoid_rotated(x: np.ndarray) -> np.ndarray:
    """BBOB f10: condition number 10^6 along rotated axes."""
    z = (x - _ELLIPSOID_OPT) @ _ROTATION.T
    return np.sum(10 ** (6 * np.arange(6) / 5) * z**2, axis=1)  # type: ignore[no-any-return]


def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, axis=1)  # type: ignore[no-any-return]


def rastrigin(x: np.ndarray) -> np.ndarray:
    z = x - _RASTRIGIN_SHIFT[: x.shape[1]]
    return 10 * x.shape[1] + np.sum(z**2 - 10 * np.cos(2 * np.pi * z), axis=1)  # type: ignore[no-any-return]


def ackley(x: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    z = x - (_ACKLEY_SHIFT[: x.shape[1]] if shift is None else shift)
    d = x.shape[1]
    far = -20 * np.exp(-0.2 * np.sqrt(np.sum(z**2, axis=1) / d))
    return far - np.exp(np.sum(np.cos(2 * np.pi * z), axis=1) / d) + 20 + math.e  # type: ignore[no-any-return]


def schwefel(x: np.ndarray) -> np.ndarray:
    return 418.9829 * x.shape[1] - np.sum(x * np.sin(np.sqrt(np.abs(x))), axis=1)  # type: ignore[no-any-return]


def styblinski_tang(x: np.ndarray) -> np.ndarray:
    return np.sum(x**4 - 16 * x**2 + 5 * x, axis=1) / 2  # type: ignore[no-any-return]


def michalewicz(x: np.ndarray) -> np.ndarray:
    i = np.arange(1, x.shape[1] + 1)
    return -np.sum(np.sin(x) * np.sin(i * x**2 / np.pi) ** 20, axis=1)  # type: ignore[no-any-return]


def levy(x: np.ndarray) -> np.ndarray:
    w = 1 + (x - 1) / 4
    inner = (w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:, :-1] + 1) ** 2)
    last = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[:, -1]) ** 2)
    return np.sin(np.pi * w[:, 0]) ** 2 + np.sum(inner, axis=1) + last  # type: ignore[no-any-return]


_LOG_OPT = np.array([-4.2, -2.5, -1.1, -5.3])  # log10 of the best values
_LOG_WEIGHT = np.array([1.0, 3.0, 0.3, 10.0])


def log_bowl(x: np.ndarray) -> np.ndarray:
    """A weighted bowl in log10 of its inputs: learning rates and decays, whose scale is a decade."""
    return np.sum(_LOG_WEIGHT * (np.log10(x) - _LOG_OPT) ** 2, axis=1)  # type: ignore[no-any-return]


_CAT_SHIFT = {"a": (1.0, -2.0, 0.5), "b": (-3.0, 2.5, -1.0), "c": (2.0, 2.0, 2.0), "d": (-1.5, -0.5, 3.5)}
_CAT_OFFSET = {"a": 0.6, "b": 0.0, "c": 0.3, "d": 0.9}
_CAT_BEST_K = {"a": 2, "b": 6, "c": 4, "d": 0}


def ackley_categorical(p: Params) -> float:
    """Ackley in three reals, its optimum moved by a categorical, plus an integer whose best value
    the categorical sets: the choices interact with the reals (section 4's mixed only adds offsets)."""
    c = str(p["c"])
    x = np.array([[float(p[f"x{i}"]) for i in range(1, 4)]])
    off_k = abs(int(p["k"]) - _CAT_BEST_K[c])
    return float(ackley(x, np.array(_CAT_SHIFT[c]))[0]) + _CAT_OFFSET[c] + 0.3 * off_k


def on_rows(f: Batch, names: tuple[str, ...]) -> Callable[[Params], float]:
    """A batch function as a Problem's loss of one point."""
    return lambda p: float(f(np.array([[float(p[n]) for n in names]]))[0])


def reals(
    d: int, low: float, high: float, prior: Literal["uniform", "log-uniform"] = "uniform"
) -> tuple[Dimension, ...]:
    return tuple(Real(f"x{i}", low, high, prior) for i in range(1, d + 1))


def target(space: tuple[Dimension, ...], truth: Callable[[Params], float], optimum: float) -> float:
    """The regret of the best TARGET_QUANTILE of the space, by random draws: one rule for every
    problem, so reaching it is as hard, against random search, everywhere."""
    spec = Spec(space=space)
    rows = Space(skopt_dimensions(spec)).rvs(TARGET_DRAWS, random_state=0)
    losses = [truth(point(spec, r)) for r in rows]
    return float(np.quantile(losses, TARGET_QUANTILE) - optimum)


def noisy(problem: Problem, sd: float) -> Problem:
    """The problem observed through Gaussian noise, drawn from the run's seed and the trial's index."""

    def noise(_: Params, seed: int, index: int) -> float:
        return float(np.random.default_rng([seed, index, 13]).normal(0.0, sd))

    return Problem(f"{problem.name}_noisy", problem.space, problem.truth, problem.optimum, problem.target,
                   problem.x0, noise)  # fmt: skip


def box(name: str, f: Batch, space: tuple[Dimension, ...], optimum: float) -> Problem:
    truth = on_rows(f, tuple(d.name for d in space))
    return Problem(name, space, truth, optimum, target(space, truth, optimum))


def ackley_cat() -> Problem:
    space = (*reals(3, -5, 5), Integer("k", 0, 8), Categorical("c", ("a", "b", "c", "d")))
    return Problem("ackley_cat", space, ackley_categorical, 0.0, target(space, ackley_categorical, 0.0))


def _levy_space() -> tuple[Dimension, ...]:
    return (Integer("x1", -10, 10), Integer("x2", -10, 10), *reals(4, -10, 10)[2:])


_ST_OPT = float(styblinski_tang(np.full((1, 10), -2.903534))[0])
_SCHWEFEL_OPT = float(schwefel(np.full((1, 4), 420.968746))[0])
# Built on demand (each target takes random draws): a smoke run builds only its few.
MAKERS: dict[str, Callable[[], Problem]] = {
    **{name: functools.partial(SYNTHETIC.__getitem__, name) for name in SYNTHETIC},
    "ellipsoid_rot6": functools.partial(box, "ellipsoid_rot6", ellipsoid_rotated, reals(6, -5, 5), 0.0),
    "rosenbrock4": functools.partial(box, "rosenbrock4", rosenbrock, reals(4, -5, 10), 0.0),
    "rastrigin5": functools.partial(box, "rastrigin5", rastrigin, reals(5, -5.12, 5.12), 0.0),
    "ackley5": functools.partial(box, "ackley5", ackley, reals(5, -32.768, 32.768), 0.0),
    "schwefel4": functools.partial(box, "schwefel4", schwefel, reals(4, -500, 500), _SCHWEFEL_OPT),
    "styblinski_tang10": functools.partial(
        box, "styblinski_tang10", styblinski_tang, reals(10, -5, 5), _ST_OPT
    ),
    "michalewicz5": functools.partial(box, "michalewicz5", michalewicz, reals(5, 0, math.pi), -4.687658),
    "log_bowl4": functools.partial(box, "log_bowl4", log_bowl, reals(4, 1e-7, 1.0, "log-uniform"), 0.0),
    "levy4_int": functools.partial(box, "levy4_int", levy, _levy_space(), 0.0),
    "ackley_cat": ackley_cat,
    "hartmann6_noisy": lambda: noisy(SYNTHETIC["hartmann6"], 0.2),
    "ackley5_noisy": lambda: noisy(MAKERS["ackley5"](), 1.0),
}


# Held out: added after the default was chosen on the suite, to check that it generalises
# (section 15). Later screens have used these six (section 14's prose); UNSEEN below, two rejected.
_GRIEWANK_SHIFT = np.random.default_rng(2026).uniform(-30, 30, 5)
_HARTMANN3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_HARTMANN3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)


def hartmann3(x: np.ndarray) -> np.ndarray:
    inner = np.sum(_HARTMANN3_A * (x[:, None, :] - _HARTMANN3_P) ** 2, axis=2)
    return -np.exp(-inner) @ np.array([1.0, 1.2, 3.0, 3.2])  # type: ignore[no-any-return]


def goldstein_price(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    first = 1 + (a + b + 1) ** 2 * (19 - 14 * a + 3 * a**2 - 14 * b + 6 * a * b + 3 * b**2)
    second = 30 + (2 * a - 3 * b) ** 2 * (18 - 32 * a + 12 * a**2 + 48 * b - 36 * a * b + 27 * b**2)
    return first * second  # type: ignore[no-any-return]


def beale(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2  # type: ignore[no-any-return]


def griewank(x: np.ndarray) -> np.ndarray:
    z = x - _GRIEWANK_SHIFT[: x.shape[1]]
    cosines = np.prod(np.cos(z / np.sqrt(np.arange(1, x.shape[1] + 1))), axis=1)
    return np.sum(z**2, axis=1) / 4000 - cosines + 1  # type: ignore[no-any-return]


def dixon_price(x: np.ndarray) -> np.ndarray:
    steps = np.arange(2, x.shape[1] + 1) * (2 * x[:, 1:] ** 2 - x[:, :-1]) ** 2
    return (x[:, 0] - 1) ** 2 + np.sum(steps, axis=1)  # type: ignore[no-any-return]


def powell(x: np.ndarray) -> np.ndarray:
    a, b, c, d = (x[:, i::4] for i in range(4))
    return np.sum((a + 10 * b) ** 2 + 5 * (c - d) ** 2 + (b - 2 * c) ** 4 + 10 * (a - d) ** 4, axis=1)  # type: ignore[no-any-return]


# The second held-out set, added after the length-scale prior's screens had seen the first six
# (section 14's prose): it judges the next change to the default. Shifts drawn once, as above.
_ALPINE_SHIFT = np.random.default_rng(2027).uniform(-6, 6, 6)
_LOG_ACKLEY_SHIFT = np.random.default_rng(2028).uniform(1, 5, 3)
_SHEKEL_C = np.array([1, 2, 2, 4, 4, 6, 3, 7, 5, 5]) / 10
_SHEKEL_A = np.array([[4.0, 4, 4, 4], [1, 1, 1, 1], [8, 8, 8, 8], [6, 6, 6, 6], [3, 7, 3, 7], [2, 9, 2, 9],
                      [5, 5, 3, 3], [8, 1, 8, 1], [6, 2, 6, 2], [7, 3.6, 7, 3.6]])  # fmt: skip


def shekel(x: np.ndarray) -> np.ndarray:
    return -np.sum(1 / (np.sum((x[:, None, :] - _SHEKEL_A) ** 2, axis=2) + _SHEKEL_C), axis=1)  # type: ignore[no-any-return]


def zakharov(x: np.ndarray) -> np.ndarray:
    weighted = x @ (0.5 * np.arange(1, x.shape[1] + 1))
    return np.sum(x**2, axis=1) + weighted**2 + weighted**4  # type: ignore[no-any-return]


def trid(x: np.ndarray) -> np.ndarray:
    return np.sum((x - 1) ** 2, axis=1) - np.sum(x[:, 1:] * x[:, :-1], axis=1)  # type: ignore[no-any-return]


def eggholder(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    return -(b + 47) * np.sin(np.sqrt(np.abs(b + a / 2 + 47))) - a * np.sin(np.sqrt(np.abs(a - b - 47)))  # type: ignore[no-any-return]


def alpine(x: np.ndarray) -> np.ndarray:
    z = x - _ALPINE_SHIFT[: x.shape[1]]
    return np.sum(np.abs(z * np.sin(z) + 0.1 * z), axis=1)  # type: ignore[no-any-return]


def log_ackley(x: np.ndarray) -> np.ndarray:
    """Ackley in log10 of its inputs, six units to a decade: a rugged learning-rate-like space."""
    return ackley(6.0 * (np.log10(x) + _LOG_ACKLEY_SHIFT[: x.shape[1]]), np.zeros(x.shape[1]))


HELD_OUT: dict[str, Callable[[], Problem]] = {
    "hartmann3": functools.partial(box, "hartmann3", hartmann3, reals(3, 0, 1), -3.86278),
    "goldstein_price": functools.partial(box, "goldstein_price", goldstein_price, reals(2, -2, 2), 3.0),
    "beale": functools.partial(box, "beale", beale, reals(2, -4.5, 4.5), 0.0),
    "griewank5": functools.partial(box, "griewank5", griewank, reals(5, -50, 50), 0.0),
    "dixon_price6": functools.partial(box, "dixon_price6", dixon_price, reals(6, -10, 10), 0.0),
    "powell8": functools.partial(box, "powell8", powell, reals(8, -4, 5), 0.0),
    "shekel4": functools.partial(box, "shekel4", shekel, reals(4, 0, 10), -10.536410),
    "zakharov5": functools.partial(box, "zakharov5", zakharov, reals(5, -5, 10), 0.0),
    "trid6": functools.partial(box, "trid6", trid, reals(6, -36, 36), -50.0),
    "eggholder": functools.partial(box, "eggholder", eggholder, reals(2, -512, 512), -959.640663),
    "alpine6": functools.partial(box, "alpine6", alpine, reals(6, -10, 10), 0.0),
    "log_ackley3": functools.partial(box, "log_ackley3", log_ackley, reals(3, 1e-6, 1.0, "log-uniform"), 0.0),
}
# The held-out problems no adopted change was screened on (sixteen screens, none adopted, ran on
# them, each named in section 14's prose; the first six have been used by more).
UNSEEN = ("shekel4", "zakharov5", "trid6", "eggholder", "alpine6", "log_ackley3")


def problems(names: Sequence[str]) -> dict[str, Problem]:
    """The named synthetic problems (section 4's three among them), the held-out ones too."""
    return {name: {**MAKERS, **HELD_OUT}[name]() for name in names}


WHY = {
    "branin": "section 4: smooth, 2-d, three global minima",
    "hartmann6": "section 4: 6-d, a few local minima, the classic GP benchmark",
    "mixed": "section 4: six-hump camel plus an integer and a categorical, separable offsets",
    "cnn": "section 4: the seed CNN's surrogate of real trainings, noisy",
    "ellipsoid_rot6": "ill-conditioned (10^6) and non-separable (rotated): BBOB f10",
    "rosenbrock4": "a long curved valley: progress needs many small steps",
    "rastrigin5": "regular grid of local minima, separable (shifted off the centre)",
    "ackley5": "nearly flat outside a narrow funnel, many local minima (shifted)",
    "schwefel4": "deceptive: the best minimum is far from the next best, near the bounds",
    "styblinski_tang10": "10-d, 2^10 local minima, separable: the suite's high end",
    "michalewicz5": "steep narrow ridges on plateaus: little gradient to follow",
    "log_bowl4": "log-uniform dimensions over 7 decades, optimum decades apart: learning-rate-like",
    "levy4_int": "multimodal with two integer dimensions",
    "ackley_cat": "a categorical that moves the reals' optimum and an integer's: interactions",
    "hartmann6_noisy": "Hartmann-6 observed with noise of sd 0.2 (regret on the true loss)",
    "ackley5_noisy": "Ackley-5 observed with noise of sd 1",
    "svm_digits": "real: an SVM's C, gamma and kernel on load_digits, 3-fold CV error",
    "hgb_cancer": "real: boosting's learning rate, leaves, leaf size, L2 on load_breast_cancer, CV log-loss",
    "hartmann3": "held out: smooth, 3-d, four local minima",
    "goldstein_price": "held out: 2-d, losses over six decades, a few local minima",
    "beale": "held out: 2-d, sharp ridges into the corners of its box",
    "griewank5": "held out: a wide bowl under many shallow ripples, non-separable (shifted)",
    "dixon_price6": "held out: a curved valley, 6-d",
    "powell8": "held out: 8-d, a singular Hessian at the optimum (flat, slow to close in)",
    "shekel4": "held out, unseen: ten narrow wells on a flat plain, 4-d",
    "zakharov5": "held out, unseen: smooth and unimodal, non-separable, steep (a quartic term)",
    "trid6": "held out, unseen: a smooth non-separable bowl, its optimum off-centre inside the box",
    "eggholder": "held out, unseen: 2-d, rugged and deceptive, the optimum on the box's edge",
    "alpine6": "held out, unseen: non-smooth (|.|), many local minima, 6-d (shifted)",
    "log_ackley3": "held out, unseen: Ackley over log-uniform inputs spanning six decades",
}
