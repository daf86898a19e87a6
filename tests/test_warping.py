"""The Yeo-Johnson warping of the losses: order, scale and the log-slopes the evidence uses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import yeojohnson, yeojohnson_llf

from kubetune.controller.warping import significant, yeo_johnson

HEAVY_TAIL = [0.1, 0.12, 0.15, 0.2, 0.22, 0.3, 0.31, 0.4, 5.0, 40.0, 300.0]


def test_the_warping_keeps_the_order_the_mean_and_the_spread() -> None:
    warped = yeo_johnson(HEAVY_TAIL)
    assert warped is not None
    values = np.array(warped.values)
    assert list(np.argsort(values)) == list(np.argsort(HEAVY_TAIL))
    assert values.mean() == pytest.approx(np.mean(HEAVY_TAIL))
    assert values.std() == pytest.approx(np.std(HEAVY_TAIL))
    # The tail is pulled in: the worst loss is no longer 5 standard deviations out.
    assert (values.max() - values.mean()) / values.std() < 2.5


def test_the_log_slopes_are_the_transform_s_derivative() -> None:
    """d(warped)/d(loss) by finite differences, the exponent and the scaling held fixed."""
    y = np.array(HEAVY_TAIL)
    warped = yeo_johnson(HEAVY_TAIL)
    assert warped is not None
    z = (y - y.mean()) / y.std()
    t, exponent = yeojohnson(z)

    def value(loss: np.ndarray) -> np.ndarray:
        zz = (loss - y.mean()) / y.std()
        tt = yeojohnson(zz, lmbda=exponent)
        return y.mean() + y.std() * (tt - t.mean()) / t.std()  # type: ignore[no-any-return]

    h = 1e-6
    numeric = (value(y + h) - value(y - h)) / (2 * h)
    assert np.log(numeric) == pytest.approx(warped.log_slopes, abs=1e-5)


@pytest.mark.parametrize("losses", [[], [1.0, 2.0], [0.5, 0.5, 0.5, 0.5]])
def test_nothing_to_warp(losses: list[float]) -> None:
    assert yeo_johnson(losses) is None


def test_significance_is_the_likelihood_ratio_test_of_the_exponent() -> None:
    """The log-slopes' sum is the Yeo-Johnson profile likelihood's gain over the identity."""
    y = np.array(HEAVY_TAIL)
    z = (y - y.mean()) / y.std()
    _, exponent = yeojohnson(z)
    warped = yeo_johnson(HEAVY_TAIL)
    assert warped is not None and significant(warped)
    assert sum(warped.log_slopes) == pytest.approx(yeojohnson_llf(exponent, z) - yeojohnson_llf(1.0, z))
    gaussian = yeo_johnson(list(np.random.default_rng(0).normal(size=40)))
    assert gaussian is not None and not significant(gaussian)
