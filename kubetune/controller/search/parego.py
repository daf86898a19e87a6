"""ParEGO's scalarisation (Knowles, 2006): several losses made one, a different one each ask.

Each objective's losses are normalised to [0, 1] over the trials observed, so
no objective's units outweigh another's; a weight vector drawn afresh for each
ask turns a trial's normalised losses into one number by the augmented
Chebyshev function, max_j w_j y_j + rho sum_j w_j y_j. Its minimum over the
space is a point of the Pareto front (any point of it, for some weights, even
where the front is not convex, which a weighted sum misses), and the sum
term breaks the ties the max leaves between weakly dominated points. Drawn
from the suggestion's seed (the study's random_state and the trial index), so
a resumed study draws the same weights. Pure: numbers in, numbers out.
"""

from __future__ import annotations

import numpy as np

# Knowles' augmentation: small enough that the max decides, large enough to break its ties.
RHO = 0.05


def weights(objectives: int, seed: int) -> np.ndarray:
    """A weight vector drawn uniformly from the simplex (a flat Dirichlet), fixed by ``seed``."""
    return np.random.default_rng(seed).dirichlet(np.ones(objectives))


def normalised(losses: np.ndarray, observed: np.ndarray | None = None) -> np.ndarray:
    """Each column mapped by the range it has in ``observed`` (by default ``losses`` itself) onto
    [0, 1]; a constant column maps to 0."""
    seen = losses if observed is None else observed
    low, high = seen.min(axis=0), seen.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    out: np.ndarray = (losses - low) / span
    return out


def chebyshev(losses: np.ndarray, w: np.ndarray, observed: np.ndarray | None = None) -> np.ndarray:
    """The augmented Chebyshev scalarisation of each row of (n, objectives) ``losses``, normalised
    over ``observed`` (by default over ``losses``)."""
    weighted = normalised(losses, observed) * w
    out: np.ndarray = weighted.max(axis=1) + RHO * weighted.sum(axis=1)
    return out
