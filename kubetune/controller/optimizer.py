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
2. an initial design of ``n_initial_points`` points drawn once from
   ``random_state`` by skopt's initial point generator (x0 not counted in
   it, as gp_minimize counts; BENCHMARKS.md section 4 compares both counts
   on the CNN's surrogate, within each other's spread);
3. the model: EI on a GP whose kernel is fitted to the finished trials, then
   told the running trials as it believes them (``optimizer.pending``: by
   default its own mean, the "kriging believer"), so parallel trials spread
   out instead of piling on one point. When a Yeo-Johnson warping of the
   losses explains them better (the GP's evidence decides,
   ``optimizer.warp``), the GP is fitted to the warped losses instead: a few
   diverged trials or a steep edge no longer flatten it where the optimum is
   (kubetune/controller/warping.py). The kernel fit is memoized per set of
   finished trials: a wave of asks after several trials finish fits once.
   Past FIT_MAX trials it is fitted on a subset; with the likelihood and the
   acquisition computed by BLAS (kubetune/controller/gp.py), a 1,000-trial
   study asks in under a second of CPU (bench/search_scale.py).
"""

from __future__ import annotations

import functools
import statistics
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from skopt import Optimizer
from skopt.learning import GaussianProcessRegressor
from skopt.learning.gaussian_process.gpr import _param_for_white_kernel_in_Sum
from skopt.learning.gaussian_process.kernels import WhiteKernel
from skopt.space import Categorical as SkCategorical
from skopt.space import Dimension as SkDimension
from skopt.space import Integer as SkInteger
from skopt.space import Real as SkReal
from skopt.space import Space
from skopt.utils import cook_estimator, cook_initial_point_generator, normalize_dimensions
from threadpoolctl import threadpool_limits

from kubetune.contract import Params, ParamValue, TrialResult
from kubetune.controller import warping
from kubetune.controller.gp import FastGP
from kubetune.spec import Dimension, Integer, Real, Spec


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


def suggest(
    spec: Spec,
    index: int,
    finished: Sequence[TrialResult],
    pending: Sequence[Params],
    told: Sequence[TrialResult] = (),
) -> Params:
    """The point for trial ``index``, given the finished trials and those still running.

    ``told``: earlier studies' trials (kubetune/controller/warmstart.py), learned from
    first; they stand in for the random initial design.
    """
    if index < len(spec.x0):
        return dict(spec.x0[index])
    design = [] if told else _initial_design(spec)
    if index - len(spec.x0) < len(design):
        return design[index - len(spec.x0)]
    point = _from_model(spec, index, observations(spec, told) + observations(spec, finished), pending)
    return point if point not in pending else _unused(spec, index, pending, point)


def _unused(spec: Spec, index: int, pending: Sequence[Params], point: Params) -> Params:
    """A random point not in flight, when the model asked for one that is (a lie too weak to move it).

    Only a space with fewer points than the trials in flight keeps ``point``.
    """
    seed = int(np.random.SeedSequence([spec.optimizer.random_state, index, 1]).generate_state(1)[0])
    rows = Space(skopt_dimensions(spec)).rvs(100, random_state=seed)
    return next((p for p in map(functools.partial(_point, spec), rows) if p not in pending), point)


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
    xs = [_row(spec, p) for p, _ in observed]
    ys = [loss for _, loss in observed]
    # One BLAS thread: the GP's matrices are at most a few hundred rows, too
    # small to split, and OpenBLAS's spinning threads fight the rest of a busy
    # 2-core controller (measured 3-10x slower fits; bench/controller.py).
    silence_routine_warnings()
    with threadpool_limits(limits=1, user_api="blas"):
        if spec.optimizer.base_estimator == "GP":
            return _from_gp(spec, seed, xs, ys, pending)
        opt = Optimizer(
            dims,
            base_estimator=spec.optimizer.base_estimator,
            acq_func=spec.optimizer.acq_func,
            n_initial_points=0,
            random_state=seed,
        )
        lie = min(ys)
        opt.tell(xs + [_row(spec, p) for p in pending], ys + [lie] * len(pending))
        return _point(spec, opt.ask())


def _from_gp(
    spec: Spec, seed: int, xs: list[list[Any]], ys: list[float], pending: Sequence[Params]
) -> Params:
    """EI on a GP whose kernel was fitted to the finished trials alone, told the running ones.

    The kernel's hyperparameters come from ``_fitted_gp`` (one fit per set of
    finished trials: a wave of suggestions after several trials finish
    shares it), fitted to the losses or to their warping (``_model``). The
    running trials are then told with the value the strategy believes
    (``_believed``) and the GP is conditioned on them without
    refitting the kernel: the lie moves the mean and shrinks the variance
    there, so the acquisition looks elsewhere.
    """
    fitted, ys = _model(spec, xs, ys)
    px = [_row(spec, p) for p in pending]
    believed = _believed(spec, fitted, ys, px)
    opt = Optimizer(
        skopt_dimensions(spec),
        base_estimator=_frozen(fitted),
        acq_func=spec.optimizer.acq_func,
        n_initial_points=0,
        random_state=seed,
        acq_optimizer_kwargs={"n_points": _candidates(len(xs) + len(px))},
    )
    opt.tell(xs + px, ys + believed)
    return _point(spec, opt.ask())


def _model(spec: Spec, xs: list[list[Any]], ys: list[float]) -> tuple[GaussianProcessRegressor, list[float]]:
    """The GP fitted to the losses, or to their warping when that explains them better.

    Better: the higher evidence, the likelihood of the losses themselves
    (kubetune/controller/warping.py), over the trials the kernel was fitted on.
    Returns the GP and the values it was fitted to, which the running trials'
    beliefs must share.
    """
    key = (spec.space, spec.optimizer.random_state, tuple(map(tuple, xs)))
    plain = _fitted_gp(*key, tuple(ys))
    warped = warping.yeo_johnson(ys) if spec.optimizer.warp == "auto" else None
    if warped is None:
        return plain, ys
    bent = _fitted_gp(*key, warped.values)
    rows = fit_rows(ys)  # the same rows for both: the warping keeps the losses' order
    if _evidence(bent, [warped.log_slopes[i] for i in rows]) > _evidence(plain, [0.0] * len(rows)):
        return bent, list(warped.values)
    return plain, ys


def _evidence(fitted: GaussianProcessRegressor, log_slopes: list[float]) -> float:
    """log p(losses): the fit's likelihood of its standardized targets, carried back to the losses."""
    scaled = len(log_slopes) * np.log(fitted.y_train_std_)
    return float(fitted.log_marginal_likelihood_value_ - scaled + sum(log_slopes))


# Past this many finished trials the kernel's hyperparameters are fitted on a
# subset (a GP fit grows as n^3 and its optimizer restarts multiply that);
# the GP is still conditioned on every trial, a single cheap solve.
FIT_MAX = 200


@functools.lru_cache(maxsize=4)  # a wave's plain and warped fits
def _fitted_gp(
    dims: tuple[Dimension, ...], random_state: int, xs: tuple[tuple[Any, ...], ...], ys: tuple[float, ...]
) -> GaussianProcessRegressor:
    """skopt's GP for this space, its kernel fitted to the finished trials (memoized per wave)."""
    space = _gp_space(dims)
    est = FastGP(**cook_estimator("GP", space=space, random_state=random_state).get_params(deep=False))
    rows, targets = fit_subset(list(xs), list(ys))
    est.fit(space.transform(rows), targets)
    return est


def fit_subset(xs: list[Any], ys: list[float]) -> tuple[list[Any], list[float]]:
    """The trials the kernel is fitted on (``fit_rows``)."""
    keep = fit_rows(ys)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def fit_rows(ys: list[float]) -> list[int]:
    """At most FIT_MAX trials: the best half, and the rest spread evenly over the history."""
    if len(ys) <= FIT_MAX:
        return list(range(len(ys)))
    order = np.argsort(ys, kind="stable")
    best = set(order[: FIT_MAX // 2].tolist())
    rest = [i for i in range(len(ys)) if i not in best]
    spread = {rest[int(j)] for j in np.linspace(0, len(rest) - 1, FIT_MAX - len(best))}
    return sorted(best | spread)


def _frozen(fitted: GaussianProcessRegressor) -> GaussianProcessRegressor:
    """A GP with ``fitted``'s kernel and noise, that conditions on data without refitting them."""
    kernel = clone(fitted.kernel_)
    noise = fitted.noise_ or 1e-10
    _, white = _param_for_white_kernel_in_Sum(kernel)
    kernel.set_params(**{white: WhiteKernel(noise_level=noise, noise_level_bounds="fixed")})
    return FastGP(kernel=kernel, normalize_y=True, noise=noise, optimizer=None)


def _believed(
    spec: Spec, fitted: GaussianProcessRegressor, ys: list[float], px: list[list[Any]]
) -> list[float]:
    """The losses the running trials are told as, by ``optimizer.pending``."""
    if not px:
        return []
    if spec.optimizer.pending == "kriging_believer":  # the GP's own mean: no invented optimism or pessimism
        return [float(v) for v in fitted.predict(_gp_space(spec.space).transform(px))]
    return [statistics.fmean(ys)] * len(px)  # cl_mean: every running trial told the mean loss seen


def _candidates(n: int) -> int:
    """Random points the acquisition is scored at before L-BFGS polishes the best.

    skopt's 10,000 cost a (10,000 x n) @ (n x n) product per ask: fewer once
    the history is long, where the GP is smooth enough that 2,000 suffice.
    """
    return max(2000, min(10000, 2_000_000 // max(n, 1)))


def _gp_space(dims: tuple[Dimension, ...]) -> Space:
    return Space(normalize_dimensions([_skopt_dimension(d) for d in dims]))


def _initial_design(spec: Spec) -> list[Params]:
    """The initial points after x0, fixed by ``random_state`` alone."""
    n = spec.optimizer.n_initial_points
    if n == 0:
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
