"""The search loop's brain: which point to try next, from the history alone.

``suggest`` is a pure function of (spec, finished results, pending points,
trial index). It never keeps optimizer state between calls: each call builds
a fresh strategy (kubetune/controller/search/) and tells it the whole
history, the way Katib re-sends the history to its suggestion service. That
costs one model fit, the same as an incremental ``tell`` (skopt refits on
every tell), and buys what matters on a cluster: a restarted controller asks
exactly the point an uninterrupted one would, with nothing to persist but
the trial records.

The points come in three phases, mirroring ``gp_minimize``:
1. the spec's ``x0`` points, in order;
2. an initial design of ``n_initial_points`` points drawn once from
   ``random_state`` by skopt's initial point generator (x0 not counted in
   it, as gp_minimize counts; BENCHMARKS.md section 4 compares both counts
   on the CNN's surrogate, within each other's spread);
3. the strategy ``optimizer.base_estimator`` names (``search.SUGGESTERS``),
   seeded by (random_state, index), told the finished trials and asked with
   the running ones' points. By default EI on a GP (search/gp.py).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from skopt.space import Space
from skopt.utils import cook_initial_point_generator
from threadpoolctl import threadpool_limits

from kubetune.contract import Params, TrialResult
from kubetune.controller.search import suggester_for
from kubetune.controller.search.space import point, skopt_dimension, skopt_dimensions
from kubetune.spec import Dimension, Spec


def silence_routine_warnings() -> None:
    """Two warnings that are legitimate answers, not errors, filtered for the whole process.

    skopt's when the acquisition picks an already evaluated point (late in a
    study), and the kernel fit's when a hyperparameter rests on its bound
    (small histories). Not by catch_warnings() around each fit: it is not
    thread-safe, and the report's plots fit a GP in a thread beside the loop's
    (a block's exit there restored the filters under the loop's fit, whose
    warnings then reached stderr). Idempotent: an equal filter replaces itself.
    """
    warnings.filterwarnings("ignore", "The objective has been evaluated at", UserWarning, r"skopt\.")
    warnings.filterwarnings("ignore", category=ConvergenceWarning, module=r"sklearn\.gaussian_process")


def suggest(
    spec: Spec,
    index: int,
    finished: Sequence[TrialResult],
    pending: Sequence[Params],
    told: Sequence[TrialResult] = (),
) -> Params:
    """The point for trial ``index``, given the finished trials and those still running.

    ``told``: earlier studies' trials (kubetune/controller/warmstart.py), learned from
    first; they stand in for the initial design.
    """
    if index < len(spec.x0):
        return dict(spec.x0[index])
    at = index - len(spec.x0)
    if not told and at < spec.optimizer.n_initial_points:
        return _design_point(spec, at)
    # Seeded by index too, so the acquisition's random restarts differ per
    # trial yet are reproducible on replay.
    seed = int(np.random.SeedSequence([spec.optimizer.random_state, index]).generate_state(1)[0])
    suggester = suggester_for(spec, seed)
    suggester.tell(told)
    suggester.tell(finished)
    # One BLAS thread: the models' matrices are at most a few hundred rows, too
    # small to split, and OpenBLAS's spinning threads fight the rest of a busy
    # 2-core controller (measured 3-10x slower fits; bench/controller.py).
    silence_routine_warnings()
    with threadpool_limits(limits=1, user_api="blas"):
        asked = suggester.ask(pending)
    return asked if asked not in pending else _unused(spec, index, pending, asked)


def _unused(spec: Spec, index: int, pending: Sequence[Params], asked: Params) -> Params:
    """A random point not in flight, when the strategy asked for one that is (a lie too weak to move it).

    Only a space with fewer points than the trials in flight keeps ``asked``.
    """
    seed = int(np.random.SeedSequence([spec.optimizer.random_state, index, 1]).generate_state(1)[0])
    rows = Space(skopt_dimensions(spec)).rvs(100, random_state=seed)
    return next((p for p in map(functools.partial(point, spec), rows) if p not in pending), asked)


def _design_point(spec: Spec, at: int) -> Params:
    """Point ``at`` of the initial design after x0, fixed by ``random_state`` and ``n_initial_points``
    alone: never by max_trials, so a study extended and resumed asks what it would have asked."""
    opt = spec.optimizer
    return point(
        spec, _design(spec.space, opt.n_initial_points, opt.initial_point_generator, opt.random_state)[at]
    )


# A latin hypercube keeps the most spread-out of up to 1,000 random ones, each scored by its
# n(n-1)/2 distances: skopt's 1,000 cost 0.09 s of CPU at 10 points, 2.1 s at 1,000 and some
# 13 minutes at DESIGN_MAX. Fewer as n grows hold the scoring to about this many distances;
# past it, one, unscored.
LHS_DISTANCES = 10**7


@functools.lru_cache(maxsize=8)  # drawn once per study, not on every ask
def _design(space: tuple[Dimension, ...], n: int, generator: str, seed: int) -> tuple[tuple[Any, ...], ...]:
    """The initial design's rows, drawn by ``generator`` (skopt's, ``random``: plain draws)."""
    dims = [skopt_dimension(d) for d in space]
    tries = min(1000, LHS_DISTANCES // (n * n))
    settings = ({"iterations": tries} if tries else {"criterion": None}) if generator == "lhs" else {}
    sampler = cook_initial_point_generator(generator, **settings)
    rows = Space(dims).rvs(n, random_state=seed) if sampler is None else sampler.generate(dims, n, seed)
    return tuple(map(tuple, rows))
