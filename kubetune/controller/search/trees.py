"""EI on skopt's tree ensembles (base_estimator RF, ET or GBRT), with the GP's settings honoured.

The running trials are told as ``optimizer.pending`` says, as the GP path
tells them: by default the ensemble's own mean there (kriging believer), or
the mean loss seen (cl_mean); told min(losses), as this path did before, a
running trial made its neighbourhood look as good as the best trial and the
next asks piled up around it, the constant liar the spec had rejected. The
ensemble is refitted with the beliefs (a tree has no posterior to condition),
one more fit per ask. ``optimizer.warp: auto`` fits it to the Yeo-Johnson-
warped losses when the warping explains them significantly better: trees
have no evidence to weigh as the GP does, so the losses' own decides
(kubetune/controller/warping.py, ``significant``). A tree's split and leaf
means are dragged by a diverged trial as a GP's mean is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.base import RegressorMixin
from sklearn.utils import RegressorTags, Tags
from skopt import Optimizer
from skopt.learning import GradientBoostingQuantileRegressor
from skopt.space import Space
from skopt.utils import cook_estimator

from kubetune.contract import Params
from kubetune.controller import warping
from kubetune.controller.search.base import XI, Suggester, beliefs, standardized
from kubetune.controller.search.space import point, row, skopt_dimensions


class TreeSuggester(Suggester):
    """skopt's Optimizer on a forest, extra trees or quantile-boosted trees."""

    def ask(self, pending: Sequence[Params]) -> Params:
        if not self.observed:
            return self.explore()
        spec = self.spec
        dims = skopt_dimensions(spec)
        opt = Optimizer(
            dims,
            base_estimator=ensemble(spec.optimizer.base_estimator, Space(dims), self.seed),
            acq_func=spec.optimizer.acq_func,
            acq_func_kwargs={"xi": XI},
            n_initial_points=0,
            random_state=self.seed,
        )
        xs, ys = self.training(pending)
        opt.tell(xs, standardized(ys))  # the same point whatever the metric's units
        return point(spec, opt.ask())

    def training(self, pending: Sequence[Params]) -> tuple[list[list[Any]], list[float]]:
        """What the ensemble is fitted to: the finished trials' (warped) losses, the running ones' beliefs."""
        spec = self.spec
        space = Space(skopt_dimensions(spec))
        xs = [row(spec, p) for p, _ in self.observed]
        ys = targets([loss for _, loss in self.observed], spec.optimizer.warp)
        px = [row(spec, p) for p in pending]

        def mean() -> Any:
            trees = ensemble(spec.optimizer.base_estimator, space, self.seed)
            return trees.fit(space.transform(xs), ys).predict(space.transform(px))

        return xs + px, ys + beliefs(spec, ys, len(px), mean)


def ensemble(name: str, space: Space, seed: int) -> RegressorMixin:
    """skopt's estimator for RF, ET or GBRT, unfitted."""
    if name == "GBRT":
        return QuantileTrees(base_estimator=cook_estimator("GBRT").base_estimator, random_state=seed)
    return cook_estimator(name, space=space, random_state=seed, n_jobs=1)


class QuantileTrees(GradientBoostingQuantileRegressor):  # type: ignore[misc]
    """skopt's GBRT, mended for this project's scikit-learn and NumPy: base_estimator GBRT failed every ask.

    skopt lists its bases in an order scikit-learn >= 1.6 reads as no
    estimator type, so its Optimizer refused it; its spread, the 16-84 %
    quantiles' half-width, called np.in1d, gone from NumPy 2.4.
    """

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        return tags

    def predict(self, X: Any, return_std: bool = False, return_quantiles: bool = False) -> Any:
        if not return_std or return_quantiles:
            return super().predict(X, return_quantiles=return_quantiles)
        low, median, high = (self.regressors_[self.quantiles.index(q)].predict(X) for q in (0.16, 0.5, 0.84))
        return median, (high - low) / 2.0


def targets(losses: list[float], warp: str) -> list[float]:
    """The values the trees are fitted to: the warped losses when that is significantly better."""
    warped = warping.yeo_johnson(losses) if warp == "auto" else None
    return list(warped.values) if warped is not None and warping.significant(warped) else losses
