"""Several objectives, constraints or both, on the GP path: ParEGO, weighed by the probability of feasibility.

Each ask scalarises the finished trials' losses afresh (search/parego.py:
normalised over what was observed, a weight vector drawn from this ask's
seed, the augmented Chebyshev function) and hands that one number to the
single-objective path (search/gp.py): the same GP and warping. A running
trial is believed per objective (kriging believer: each objective's own GP
mean there, scalarised as the finished trials were), then carried onto the
scale the GP was fitted to (warped or not) by interpolating the finished
trials' (scalarised, fitted) pairs: the warp is monotone, but has no formula
for a new value. One objective with constraints skips the scalarisation:
its losses, and its beliefs, are the single-objective path's.

With constraints, each constrained metric gets a GP of its own, fitted to the
values the trials reported, and the point asked is the candidate where EI
times the probability that every constraint holds is highest (Gardner et al.,
2014; search/feasibility.py). EI is measured from the best feasible trial; with
none feasible yet, the probability of feasibility alone is maximised, to find
the feasible region first. Infeasible trials are told to the objective's GP
as they are (their values still say where the objective is good); they never
become the incumbent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skopt.acquisition import gaussian_ei
from skopt.learning import GaussianProcessRegressor

from kubetune.contract import Params, TrialResult
from kubetune.controller import objectives
from kubetune.controller.search.base import XI, standardized
from kubetune.controller.search.feasibility import probability
from kubetune.controller.search.gp import GPSuggester, candidates, fitted_gp, frozen
from kubetune.controller.search.parego import chebyshev, weights
from kubetune.controller.search.space import normalized, point, row
from kubetune.spec import Spec


@dataclass(frozen=True)
class Outcome:
    """A finished trial as the multi-objective search sees it."""

    params: Params
    losses: tuple[float, ...]  # each objective's, lower is better
    constrained: tuple[float, ...]  # each constrained metric's value
    feasible: bool


def outcomes(spec: Spec, results: Sequence[TrialResult]) -> list[Outcome]:
    """The trials with every objective and constrained metric, in trial order; the rest (failed,
    pruned before reporting them all) are not told."""
    found = []
    for r in sorted(results, key=lambda r: r.index):
        losses, constrained = objectives.losses(spec, r), objectives.constrained(spec, r)
        if losses is not None and constrained is not None:
            found.append(Outcome(r.params, losses, constrained, objectives.feasible(spec, r)))
    return found


class MultiSuggester(GPSuggester):
    """ParEGO on the GP path, the acquisition weighed by the probability of feasibility."""

    def __init__(self, spec: Spec, seed: int) -> None:
        super().__init__(spec, seed)
        self.outcomes: list[Outcome] = []

    def tell(self, finished: Sequence[TrialResult]) -> None:
        self.outcomes += outcomes(self.spec, finished)

    def ask(self, pending: Sequence[Params]) -> Params:
        if not self.outcomes:
            return self.explore()
        losses = self.losses()
        scalar = chebyshev(losses, self.weights()) if losses.shape[1] > 1 else losses[:, 0]
        self.observed = [(o.params, float(v)) for o, v in zip(self.outcomes, scalar, strict=True)]
        return super().ask(pending)

    def losses(self) -> np.ndarray:
        return np.array([o.losses for o in self.outcomes])

    def weights(self) -> np.ndarray:
        """This ask's weights: drawn from its seed, so a replayed ask draws the same."""
        return weights(len(self.spec.objectives), self.seed)

    def believe(self, fitted: GaussianProcessRegressor, ys: list[float], px: list[list[Any]]) -> list[float]:
        """Kriging believer per objective, scalarised, on the fitted scale (module docstring);
        the single-objective path's beliefs for one objective or cl_mean."""
        spec = self.spec
        if not px or len(spec.objectives) == 1 or spec.optimizer.pending != "kriging_believer":
            return super().believe(fitted, ys, px)
        xs = tuple(tuple(row(spec, o.params)) for o in self.outcomes)
        at = normalized(spec.space).transform(px)
        losses = self.losses()
        means = np.column_stack([
            fitted_gp(spec.space, spec.optimizer.random_state, xs, tuple(losses[:, j])).predict(at)
            for j in range(losses.shape[1])
        ])  # fmt: skip
        believed = chebyshev(means, self.weights(), observed=losses)
        raw = np.array([loss for _, loss in self.observed])
        if np.array_equal(raw, ys):  # fitted to the scalarised losses as they are
            return [float(v) for v in believed]
        order = np.argsort(raw, kind="stable")
        return [float(v) for v in np.interp(believed, raw[order], np.asarray(ys)[order])]

    def regional(self) -> bool:
        """No turns: ParEGO's weights move the best trial at every ask (spec.TRUST_REGIONS)."""
        return False

    def choose(self, fitted: GaussianProcessRegressor, xs: list[list[Any]], ys: list[float]) -> Params:
        if not self.spec.constraints:
            return super().choose(fitted, xs, ys)
        space = normalized(self.spec.space)
        ys = standardized(ys)  # as the unconstrained path's acquisition sees them
        gp = frozen(fitted).fit(space.transform(xs), ys)
        rows = space.rvs(candidates(len(xs)), random_state=self.seed)
        at = space.transform(rows)
        # ys: the finished trials' (in self.outcomes' order), then the running ones' beliefs.
        feasible = [y for y, o in zip(ys, self.outcomes, strict=False) if o.feasible]
        weight = self.feasibility(at)
        acquisition = weight if not feasible else gaussian_ei(at, gp, y_opt=min(feasible), xi=XI) * weight
        return point(self.spec, rows[int(np.argmax(acquisition))])

    def feasibility(self, at: np.ndarray) -> np.ndarray:
        """The probability that every constraint holds at each of ``at`` (normalised rows)."""
        spec = self.spec
        xs = tuple(tuple(row(spec, o.params)) for o in self.outcomes)
        chance = np.ones(len(at))
        for j, c in enumerate(spec.constraints):
            gp = fitted_gp(
                spec.space, spec.optimizer.random_state, xs, tuple(o.constrained[j] for o in self.outcomes)
            )
            mean, std = gp.predict(at, return_std=True)
            chance *= probability(mean, std, c.min, c.max)
        return chance
