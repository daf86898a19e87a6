"""The search strategy's interface: told the finished trials, asked a point with the running ones.

A ``Suggester`` is built afresh for every suggestion, from the spec and a
seed that ``optimizer.suggest`` derives from (random_state, trial index); it
is told every finished trial and asked once. Nothing carries over between
suggestions, which is what lets a study resumed after a kill ask exactly
what an uninterrupted one would. A strategy only says which point comes
next: x0, the initial design and keeping two running trials off one point
are ``optimizer.suggest``'s, the same for every strategy.
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
from skopt.space import Space

from kubetune.contract import Params, TrialResult
from kubetune.controller.search.space import point, skopt_dimensions
from kubetune.spec import Spec

Observation = tuple[Params, float]  # a finished trial's point and its loss (lower is better)

# EI's (and PI's) margin over the best loss, in standardized losses (``standardized``): none, as
# Optuna's and BoTorch's EI. skopt's 0.01 was in the metric's own units; 0.01 of the losses'
# spread lost branin and log_bowl4 in every one of 20 seeds (BENCHMARKS.md section 14).
XI = 0.0


class Suggester(ABC):
    """One search strategy, for one suggestion."""

    def __init__(self, spec: Spec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self.observed: list[Observation] = []

    def tell(self, finished: Sequence[TrialResult]) -> None:
        """Learn from finished trials; earlier studies' (warm start) are told first, in their own call."""
        self.observed += observations(self.spec, finished)

    @abstractmethod
    def ask(self, pending: Sequence[Params]) -> Params:
        """The next point, with ``pending`` the points of the trials still running."""

    def explore(self) -> Params:
        """A random point, from this suggestion's seed: what to ask with nothing to learn from."""
        return point(self.spec, Space(skopt_dimensions(self.spec)).rvs(random_state=self.seed)[0])


def loss_of(spec: Spec, value: float) -> float:
    """skopt minimizes: flip the sign of metrics we maximize."""
    return -value if spec.objective.goal == "maximize" else value


def observations(spec: Spec, results: Sequence[TrialResult]) -> list[Observation]:
    """The (point, loss) pairs a strategy learns from, in trial order.

    Failed trials are left out unless the spec names a penalty to tell instead:
    an invented score would mislead the model. A pruned trial is told the
    value it had reached when it was stopped, as Optuna tells TPE: worse than
    it might have ended, which keeps the model away from a region the
    stopping rule already judged poor (README, "Early stopping").
    """
    penalty = spec.budget.failure_penalty
    pairs = []
    for r in sorted(results, key=lambda r: r.index):
        if not r.failed and r.objective_value is not None:
            pairs.append((r.params, loss_of(spec, r.objective_value)))
        elif r.failed and penalty is not None:
            pairs.append((r.params, loss_of(spec, penalty)))
    return pairs


def beliefs(
    spec: Spec, losses: Sequence[float], running: int, mean: Callable[[], Sequence[float]]
) -> list[float]:
    """What each of ``running`` trials is told as its loss, by ``optimizer.pending``.

    kriging_believer: the model's own mean there (``mean``), no invented
    optimism or pessimism; cl_mean: the mean loss seen. ``losses`` are the
    values the model was fitted to (warped or not), which the beliefs share.
    """
    if not running:
        return []
    if spec.optimizer.pending == "kriging_believer":
        return [float(v) for v in mean()]
    return [statistics.fmean(losses)] * running


def standardized(values: Sequence[float]) -> list[float]:
    """The values less their mean, over their spread (unchanged in scale where all are equal):
    what an acquisition sees, so that no metric's units move the point it asks (EI's margin,
    L-BFGS's tolerances)."""
    y = np.asarray(values, dtype=float)
    spread = float(y.std())
    return [float(v) for v in (y - y.mean()) / (spread if spread > 0.0 else 1.0)]
