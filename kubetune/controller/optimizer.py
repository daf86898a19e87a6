"""The Gaussian-process loop's brain: which point to try next, from the history alone.

``suggest`` is a pure function of (spec, finished results, pending points,
trial index). It never keeps optimizer state between calls: each call builds
a fresh scikit-optimize ``Optimizer`` and tells it the whole history, the way
Katib re-sends the history to its suggestion service. That costs one GP fit,
the same as an incremental ``tell`` (skopt refits on every tell), and buys
what matters on a cluster: a restarted controller asks exactly the point an
uninterrupted one would, with nothing to persist but the trial records.

The points come in three phases, mirroring ``gp_minimize``:
1. the spec's ``x0`` points, in order;
2. an initial design of ``n_initial_points - len(x0)`` points drawn once from
   ``random_state`` by skopt's initial point generator;
3. the model: fit on finished trials, with running trials told as a
   constant lie (the best value seen, skopt's ``cl_min``) so parallel trials
   spread out instead of piling on one point.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from skopt import Optimizer
from skopt.space import Categorical as SkCategorical
from skopt.space import Dimension as SkDimension
from skopt.space import Integer as SkInteger
from skopt.space import Real as SkReal
from skopt.space import Space
from skopt.utils import cook_initial_point_generator
from threadpoolctl import threadpool_limits

from kubetune.contract import Params, ParamValue, TrialResult
from kubetune.spec import Dimension, Integer, Real, Spec


def skopt_dimensions(spec: Spec) -> list[SkDimension]:
    return [_skopt_dimension(d) for d in spec.space]


def _skopt_dimension(d: Dimension) -> SkDimension:
    if isinstance(d, Real):
        return SkReal(d.low, d.high, prior=d.prior, name=d.name)
    if isinstance(d, Integer):
        return SkInteger(d.low, d.high, name=d.name)
    return SkCategorical(list(d.values), name=d.name)


def loss_of(spec: Spec, value: float) -> float:
    """skopt minimizes: flip the sign of metrics we maximize."""
    return -value if spec.objective.goal == "maximize" else value


def observations(spec: Spec, results: Sequence[TrialResult]) -> list[tuple[Params, float]]:
    """The (point, loss) pairs the optimizer learns from, in trial order.

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


def suggest(spec: Spec, index: int, finished: Sequence[TrialResult], pending: Sequence[Params]) -> Params:
    """The point for trial ``index``, given the finished trials and those still running."""
    if index < len(spec.x0):
        return dict(spec.x0[index])
    design = _initial_design(spec)
    if index - len(spec.x0) < len(design):
        return design[index - len(spec.x0)]
    return _from_model(spec, index, observations(spec, finished), pending)


def _from_model(
    spec: Spec, index: int, observed: list[tuple[Params, float]], pending: Sequence[Params]
) -> Params:
    dims = skopt_dimensions(spec)
    # Seeded by index too, so the acquisition's random restarts differ per
    # trial yet are reproducible on replay.
    seed = int(np.random.SeedSequence([spec.optimizer.random_state, index]).generate_state(1)[0])
    if not observed:
        # Nothing finished yet (all failed, or all still running): keep exploring.
        return _point(spec, Space(dims).rvs(random_state=seed)[0])
    opt = Optimizer(
        dims,
        base_estimator=spec.optimizer.base_estimator,
        acq_func=spec.optimizer.acq_func,
        n_initial_points=0,
        random_state=seed,
    )
    lie = min(loss for _, loss in observed)
    xs = [_row(spec, p) for p, _ in observed] + [_row(spec, p) for p in pending]
    ys = [loss for _, loss in observed] + [lie] * len(pending)
    # One BLAS thread: the GP's matrices are at most a few hundred rows, too
    # small to split, and OpenBLAS's spinning threads fight the rest of a busy
    # 2-core controller (measured 3-10x slower fits; bench/controller.py).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # skopt warns when the acquisition picks an already evaluated point;
        # that is a legitimate answer late in a study, not an error.
        warnings.simplefilter("ignore", UserWarning)
        opt.tell(xs, ys)
        return _point(spec, opt.ask())


def _initial_design(spec: Spec) -> list[Params]:
    """The initial points after x0, fixed by ``random_state`` alone."""
    n = spec.optimizer.n_initial_points - len(spec.x0)
    if n <= 0:
        return []
    space = Space(skopt_dimensions(spec))
    generator = cook_initial_point_generator(spec.optimizer.initial_point_generator)
    seed = spec.optimizer.random_state
    rows = (
        space.rvs(n, random_state=seed)
        if generator is None
        else generator.generate(space.dimensions, n, random_state=seed)
    )
    return [_point(spec, row) for row in rows]


def _row(spec: Spec, params: Params) -> list[Any]:
    return [params[d.name] for d in spec.space]


def _point(spec: Spec, row: Sequence[Any]) -> Params:
    """A skopt row as JSON-ready Python values (skopt hands out numpy scalars)."""
    return {d.name: _plain(d, v) for d, v in zip(spec.space, row, strict=True)}


def _plain(d: Dimension, v: Any) -> ParamValue:
    if isinstance(d, Real):
        return float(v)
    if isinstance(d, Integer):
        return int(v)
    return v.item() if isinstance(v, np.generic) else v  # type: ignore[no-any-return]
