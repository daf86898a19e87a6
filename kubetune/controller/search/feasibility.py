"""The probability that a point keeps a constraint, from a Gaussian process's belief about the metric.

Gardner et al. (2014), "Bayesian optimization with inequality constraints":
each constrained metric gets a GP of its own, and the acquisition is
multiplied by the probability, under those GPs, that every constraint holds
(independent GPs, so the product). Pure: means and deviations in, probabilities out.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def probability(mean: np.ndarray, std: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """P(low <= metric <= high) at each point, the metric ~ N(mean, std^2); a missing bound is open.

    A zero deviation (a point the GP has seen, noise-free) is a certainty either way.
    """
    sd = np.maximum(std, 1e-12)
    upper = np.ones_like(mean) if high is None else norm.cdf((high - mean) / sd)
    lower = np.zeros_like(mean) if low is None else norm.cdf((low - mean) / sd)
    chance: np.ndarray = np.clip(upper - lower, 0.0, 1.0)
    return chance
