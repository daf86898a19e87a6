"""Output warping: the losses the GP is fitted to, when a monotone transform explains them better.

A GP assumes its targets are Gaussian around a smooth mean. Losses with a
heavy tail (a few diverged trials far above the rest, or a function whose
edges are orders of magnitude above its minimum) break that: the fitted GP
spends its length scales and noise on the tail and is flat where the optimum
is. A Yeo-Johnson transform, its exponent chosen by maximum likelihood as in
HEBO (Cowen-Rivers et al., 2022), pulls the tail in and spreads the good end
out. It keeps the losses' order, so the best trial stays the best.

Whether to use it is the GP's call: ``optimizer`` fits the GP to the losses
and to the warped losses and keeps the one with the higher evidence, the
marginal likelihood of the losses themselves (the warped fit's likelihood
plus the log-derivative of the transform, ``log_slopes``). On losses that are
already Gaussian enough (Branin's bowl) the plain fit wins and nothing
changes; bench/search.py measures both (`kubetune pN unwarped`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import yeojohnson


@dataclass(frozen=True)
class Warped:
    """The warped losses, and each one's log d(warped)/d(loss)."""

    values: tuple[float, ...]
    log_slopes: tuple[float, ...]


def yeo_johnson(losses: list[float]) -> Warped | None:
    """The losses Yeo-Johnson-transformed, mapped back to their own mean and spread.

    On the losses' own scale the constant liar's mean means what it meant
    unwarped. None when there is nothing to warp: fewer than 3 losses, or
    all equal.
    """
    y = np.asarray(losses, dtype=float)
    spread = float(y.std())
    if len(y) < 3 or spread == 0.0:
        return None
    z = (y - y.mean()) / spread
    t, exponent = yeojohnson(z)
    t_spread = float(t.std())
    if not np.all(np.isfinite(t)) or t_spread == 0.0:
        return None
    values = y.mean() + spread * (t - t.mean()) / t_spread
    # d(values)/dy = T'(z) / t_spread, and T'(z) = (1 + |z|)^((exponent - 1) sign z).
    log_slopes = (exponent - 1.0) * np.sign(z) * np.log1p(np.abs(z)) - np.log(t_spread)
    return Warped(tuple(values.tolist()), tuple(log_slopes.tolist()))


# Half the 95 % point of chi-square with one degree of freedom: the likelihood-ratio
# test's bar for the one parameter the warping adds, its exponent.
ONE_PARAMETER = 1.92


def significant(warped: Warped) -> bool:
    """Whether the warping explains the losses better with no model of where they came from.

    For a model with no evidence of its own (skopt's trees): the losses as
    independent Gaussian draws, warped or not. The warped values keep the
    losses' mean and spread, so the two likelihoods differ by the sum of the
    log-slopes alone, the Yeo-Johnson profile likelihood's gain over the
    identity; it counts when it passes the likelihood-ratio test.
    """
    return sum(warped.log_slopes) > ONE_PARAMETER
