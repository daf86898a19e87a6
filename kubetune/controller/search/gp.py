"""EI on a Gaussian process: gp_minimize's model, fitted to the losses or to their warping.

The kernel is fitted to the finished trials (``fitted_gp``, memoized per set
of finished trials: a wave of asks after several trials finish fits once),
to the losses or to their Yeo-Johnson warping, whichever the GP's evidence
prefers (``optimizer.warp``; kubetune/controller/warping.py): a few diverged
trials or a steep edge no longer flatten it where the optimum is. The running
trials are then told as the strategy believes them (``optimizer.pending``: by
default the GP's own mean, the "kriging believer") and the GP is conditioned
on them without refitting the kernel: the lie moves the mean and shrinks the
variance there, so parallel trials spread out instead of piling on one point.
Every other ask looks only within a trust region around the best trial
(``optimizer.trust_region``; kubetune/controller/search/region.py), the asks
between over the whole space: a short study spends fewer trials at the edges.
With those turns, the kernel's length scales are fitted under a prior that
keeps each off its upper bound (kubetune/controller/gp.py, LongScalePriorGP):
the free fit writes off a dimension the trials have barely resolved, or one
whose wiggles it takes for noise, and no later ask moves it. For the
whole-space asks the kernel is also fitted with Optuna's whole prior, which
also lengthens short scales (PriorGP), and that fit is used where it
predicts each trial from the others better. A whole-space ask's integers and
categoricals, which skopt's L-BFGS polishes relaxed and then rounds, are set
one at a time to the acquisition's best value on their grid
(search/discrete.py).
Past FIT_MAX trials the kernel is fitted on a subset; with the likelihood and
the acquisition computed by BLAS (kubetune/controller/gp.py), a 1,000-trial
study asks in 0.8-1.05 s of CPU on a trust region's turn and 1.35-1.5 s on
a whole-space turn, which fits the kernel a third time (bench/search_scale.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from skopt import Optimizer
from skopt.acquisition import _gaussian_acquisition
from skopt.learning import GaussianProcessRegressor
from skopt.learning.gaussian_process.gpr import _param_for_white_kernel_in_Sum
from skopt.learning.gaussian_process.kernels import WhiteKernel
from skopt.space import Categorical as SkCategorical
from skopt.space import Space
from skopt.utils import cook_estimator

from kubetune.contract import Params
from kubetune.controller import warping
from kubetune.controller.gp import WITH_PRIOR, FastGP, Prior, loo_log_density
from kubetune.controller.search.base import XI, Suggester, beliefs, standardized
from kubetune.controller.search.discrete import Score, sweep
from kubetune.controller.search.region import box, relative_scales, side
from kubetune.controller.search.space import normalized, point, row, skopt_dimensions
from kubetune.spec import Dimension, Spec

# Past this many finished trials the kernel's hyperparameters are fitted on a
# subset (a GP fit grows as n^3 and its optimizer restarts multiply that);
# the GP is still conditioned on every trial, a single cheap solve.
FIT_MAX = 200


class GPSuggester(Suggester):
    """EI (or the spec's acq_func) on skopt's GP, its kernel fitted to the finished trials alone."""

    def ask(self, pending: Sequence[Params]) -> Params:
        if not self.observed:
            return self.explore()  # nothing finished yet (all failed, or all still running)
        spec = self.spec
        xs = [row(spec, p) for p, _ in self.observed]
        fitted, ys = model(spec, xs, [loss for _, loss in self.observed], self.fits(len(xs) + len(pending)))
        px = [row(spec, p) for p in pending]
        return self.choose(fitted, xs + px, ys + self.believe(fitted, ys, px))

    def believe(self, fitted: GaussianProcessRegressor, ys: list[float], px: list[list[Any]]) -> list[float]:
        """What each running trial (at ``px``) is told, on the scale of ``ys``, the values ``fitted``
        was fitted to (``optimizer.pending``)."""
        return beliefs(
            self.spec, ys, len(px), lambda: fitted.predict(normalized(self.spec.space).transform(px))
        )

    def choose(self, fitted: GaussianProcessRegressor, xs: list[list[Any]], ys: list[float]) -> Params:
        """The acquisition's best point, the GP conditioned on ``xs`` (finished trials, then running
        ones) and ``ys`` (their fitted losses, then beliefs): every other ask (by the count of
        trials told) only within the trust region (``optimizer.trust_region``; search/region.py).
        The acquisition sees ``ys`` standardized, the same point whatever the metric's units."""
        local = None if whole_space_turn(len(xs)) else self.region(fitted)
        ys = standardized(ys)
        return self.anywhere(fitted, xs, ys) if local is None else self.within(local, fitted, xs, ys)

    def fits(self, told: int) -> tuple[Prior, ...]:
        """The kernel's fits for the ask with ``told`` trials told, as model() takes them: skopt's
        own where the asks do not take turns; where they do, with the long-scale prior, and on
        choose()'s whole-space turns also with the whole prior."""
        if not self.regional():
            return ("none",)
        return ("long", "whole") if whole_space_turn(told) else ("long",)

    def regional(self) -> bool:
        """Whether the asks take turns, within the trust region and over the whole space: not where
        the spec turns it off or every dimension is categorical."""
        numeric = any(not isinstance(d, SkCategorical) for d in skopt_dimensions(self.spec))
        return self.spec.optimizer.trust_region != "none" and numeric

    def region(self, fitted: GaussianProcessRegressor) -> Space | None:
        """The trust region around the best finished trial; None where the asks do not take turns."""
        if not self.regional():
            return None
        spec = self.spec
        dims = skopt_dimensions(spec)
        losses = [loss for _, loss in self.observed]
        unit = normalized(spec.space)
        numeric = sum(not isinstance(d, SkCategorical) for d in dims)
        length = side(losses, len(spec.x0) + spec.optimizer.n_initial_points, numeric)
        scales = relative_scales(np.atleast_1d(fitted.kernel_.k1.k2.length_scale), unit)
        best = row(spec, self.observed[int(np.argmin(losses))][0])
        return box(dims, unit, best, length, scales)

    def within(
        self, local: Space, fitted: GaussianProcessRegressor, xs: list[list[Any]], ys: list[float]
    ) -> Params:
        """The acquisition's best of random points in ``local``, scored by the model of the whole space."""
        gp = frozen(fitted).fit(normalized(self.spec.space).transform(xs), ys)
        rows = local.rvs(candidates(len(xs)), random_state=self.seed)
        return point(self.spec, rows[int(np.argmin(self.acquisition(gp, min(ys))(rows)))])

    def anywhere(self, fitted: GaussianProcessRegressor, xs: list[list[Any]], ys: list[float]) -> Params:
        """skopt's ask over the whole space: random candidates, the best polished by L-BFGS, then its
        discrete coordinates set to the acquisition's best values on their grid (search/discrete.py)."""
        opt = Optimizer(
            skopt_dimensions(self.spec),
            base_estimator=frozen(fitted),
            acq_func=self.spec.optimizer.acq_func,
            n_initial_points=0,
            random_state=self.seed,
            acq_func_kwargs={"xi": XI},
            acq_optimizer_kwargs={"n_points": candidates(len(xs))},
        )
        opt.tell(xs, ys)
        asked = opt.ask()
        score = self.acquisition(opt.models[-1], min(ys))
        return point(self.spec, sweep(skopt_dimensions(self.spec), asked, score))

    def acquisition(self, gp: GaussianProcessRegressor, y_best: float) -> Score:
        """The spec's acquisition on ``gp`` at rows of points, negated as skopt's (lower is better).

        gp_hedge's portfolio picks skopt's whole-space candidate; the trust region's candidates and
        the sweep of discrete coordinates are scored with EI.
        """
        unit = normalized(self.spec.space)
        acq = "EI" if self.spec.optimizer.acq_func == "gp_hedge" else self.spec.optimizer.acq_func
        xi = {"xi": XI}
        return lambda rows: _gaussian_acquisition(unit.transform(rows), gp, y_best, acq, acq_func_kwargs=xi)


def whole_space_turn(told: int) -> bool:
    """Whether the ask with ``told`` trials told, finished and running, looks over the whole space;
    the asks between look within the trust region. fits() adds the whole prior's fit for these turns."""
    return told % 2 == 1


def model(
    spec: Spec, xs: list[list[Any]], ys: list[float], fits: Sequence[Prior] = ("none",)
) -> tuple[GaussianProcessRegressor, list[float]]:
    """The GP fitted to the losses, or to their warping when that explains them better.

    Better: the higher evidence, the likelihood of the losses themselves
    (kubetune/controller/warping.py), over the trials the kernel was fitted on.
    ``fits``: the priors on the length scales to fit with
    (kubetune/controller/gp.py); the first is fitted so, each further one then
    to the chosen values and kept where its leave-one-out predictions are
    better. Returns the GP and the values it was fitted to, which the running
    trials' beliefs must share.
    """
    key = (spec.space, spec.optimizer.random_state, tuple(map(tuple, xs)))
    first, *others = fits
    fitted, values = _warped_or_not(key, ys, spec.optimizer.warp == "auto", first)
    for prior in others:
        held = fitted_gp(*key, tuple(values), prior)
        fitted = held if loo_log_density(held) > loo_log_density(fitted) else fitted
    return fitted, values


def _warped_or_not(
    key: tuple[Any, ...], ys: list[float], warp: bool, prior: Prior
) -> tuple[GaussianProcessRegressor, list[float]]:
    """The fit with ``prior`` to the losses, or to their warping where its evidence is higher."""
    plain = fitted_gp(*key, tuple(ys), prior)
    warped = warping.yeo_johnson(ys) if warp else None
    if warped is None:
        return plain, ys
    bent = fitted_gp(*key, warped.values, prior)
    rows = fit_rows(ys)  # the same rows for both: the warping keeps the losses' order
    if _evidence(bent, [warped.log_slopes[i] for i in rows]) > _evidence(plain, [0.0] * len(rows)):
        return bent, list(warped.values)
    return plain, ys


def _evidence(fitted: GaussianProcessRegressor, log_slopes: list[float]) -> float:
    """log p(losses): the fit's likelihood of its standardized targets, carried back to the losses
    (with a prior, plus its log at the fit: the same prior for the two fits compared)."""
    scaled = len(log_slopes) * np.log(fitted.y_train_std_)
    return float(fitted.log_marginal_likelihood_value_ - scaled + sum(log_slopes))


@functools.lru_cache(maxsize=8)  # a wave's plain and warped fits, and the whole prior's
def fitted_gp(
    dims: tuple[Dimension, ...],
    random_state: int,
    xs: tuple[tuple[Any, ...], ...],
    ys: tuple[float, ...],
    prior: Prior = "none",
) -> GaussianProcessRegressor:
    """skopt's GP for this space, its kernel fitted to the finished trials (memoized per wave),
    with ``prior`` on its length scales (kubetune/controller/gp.py)."""
    space = normalized(dims)
    params = cook_estimator("GP", space=space, random_state=random_state).get_params(deep=False)
    est = WITH_PRIOR[prior](**params)
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


def frozen(fitted: GaussianProcessRegressor) -> GaussianProcessRegressor:
    """A GP with ``fitted``'s kernel and noise, that conditions on data without refitting them."""
    kernel = clone(fitted.kernel_)
    noise = fitted.noise_ or 1e-10
    _, white = _param_for_white_kernel_in_Sum(kernel)
    kernel.set_params(**{white: WhiteKernel(noise_level=noise, noise_level_bounds="fixed")})
    return FastGP(kernel=kernel, normalize_y=True, noise=noise, optimizer=None)


def candidates(n: int) -> int:
    """Random points the acquisition is scored at before L-BFGS polishes the best.

    skopt's 10,000 cost a (10,000 x n) @ (n x n) product per ask: fewer once
    the history is long, where the GP is smooth enough that 2,000 suffice.
    """
    return max(2000, min(10000, 2_000_000 // max(n, 1)))
