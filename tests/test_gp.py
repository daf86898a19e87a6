"""FastGP is skopt's GP: the same likelihood, fit and predictions, to rounding, only faster."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from skopt.learning import GaussianProcessRegressor
from skopt.space import Categorical, Integer, Real, Space
from skopt.utils import cook_estimator

from kubetune.controller.gp import (
    LENGTH_SCALE_PRIOR,
    FastGP,
    LongScalePriorGP,
    PriorGP,
    is_matern52_ard,
    loo_log_density,
)
from kubetune.controller.search.gp import frozen


def skopt_settings(space: Space, seed: int = 0) -> dict[str, Any]:
    """The settings of skopt's GP for ``space`` (cook_estimator's), which every fit here shares."""
    settings: dict[str, Any] = cook_estimator("GP", space=space, random_state=seed).get_params(deep=False)
    return settings


def pair(
    space: Space, n: int, seed: int = 0
) -> tuple[GaussianProcessRegressor, FastGP, np.ndarray, np.ndarray]:
    """skopt's GP for ``space`` and a FastGP with the same settings, both fitted to the same n points."""
    rng = np.random.default_rng(seed)
    X = space.transform(space.rvs(n, random_state=seed))
    y = np.sin(3 * X.sum(axis=1)) + 0.05 * rng.standard_normal(n)
    skopt_gp = GaussianProcessRegressor(**skopt_settings(space, seed))
    return skopt_gp.fit(X, y), FastGP(**skopt_settings(space, seed)).fit(X, y), X, y


SPACE6 = Space([Real(0.0, 1.0) for _ in range(6)])


def test_the_likelihood_and_its_gradient_are_scikit_learns() -> None:
    skopt_gp, fast, _, _ = pair(SPACE6, 40)
    assert is_matern52_ard(fast.kernel_, 6)
    bounds = skopt_gp.kernel_.bounds  # log-space, as theta
    for theta in np.random.default_rng(1).uniform(bounds[:, 0], bounds[:, 1], (5, len(bounds))):
        want, want_grad = skopt_gp.log_marginal_likelihood(theta, eval_gradient=True)
        got, got_grad = fast.log_marginal_likelihood(theta, eval_gradient=True)
        assert got == pytest.approx(want, rel=1e-9)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-7, atol=1e-9)
        assert fast.log_marginal_likelihood(theta) == pytest.approx(want, rel=1e-9)


# A space mixing categoricals with numbers: skopt one-hot encodes them, for the same Matern.
MIXED = Space([Real(-2.0, 2.0), Integer(0, 20), Categorical(["a", "b", "c", "d"])])


@pytest.mark.parametrize("space", [SPACE6, MIXED], ids=["reals", "mixed"])
def test_the_fitted_kernel_is_skopts(space: Space) -> None:
    skopt_gp, fast, X_train, y = pair(space, 40)
    assert is_matern52_ard(fast.kernel_, fast.X_train_.shape[1])
    # The same optimum; a length scale at its bound, where the likelihood is flat, may stop elsewhere
    # (where depends on the CPU's rounding): the same predictions where the data is, and mostly elsewhere.
    assert fast.log_marginal_likelihood_value_ == pytest.approx(
        skopt_gp.log_marginal_likelihood_value_, rel=1e-6
    )
    tolerance = 1e-2 * np.std(y)
    np.testing.assert_allclose(fast.predict(X_train), skopt_gp.predict(X_train), atol=tolerance)
    X = space.transform(space.rvs(50, random_state=5))
    assert np.median(np.abs(fast.predict(X) - skopt_gp.predict(X))) < tolerance


def test_predictions_and_their_gradients_are_skopts() -> None:
    skopt_gp, fast, _, _ = pair(SPACE6, 40)
    for name in ("kernel_", "alpha_", "K_inv_", "X_train_", "y_train_std_", "y_train_mean_"):
        setattr(fast, name, getattr(skopt_gp, name))
    X = SPACE6.transform(SPACE6.rvs(50, random_state=3))
    close: Any = np.testing.assert_allclose
    for got, want in zip(fast.predict(X, return_std=True), skopt_gp.predict(X, return_std=True), strict=True):
        close(got, want, rtol=1e-7, atol=1e-10)
    grads = {"return_std": True, "return_mean_grad": True, "return_std_grad": True}
    for x in X[:5]:
        for got, want in zip(fast.predict([x], **grads), skopt_gp.predict([x], **grads), strict=True):
            close(got, want, rtol=1e-6, atol=1e-9)


def test_an_all_categorical_space_takes_scikit_learns_path() -> None:
    # skopt's HammingKernel.
    space = Space([Categorical(["a", "b", "c"]), Categorical(["x", "y"])])
    skopt_gp, fast, _, _ = pair(space, 20)
    assert not is_matern52_ard(fast.kernel_, fast.X_train_.shape[1])
    np.testing.assert_allclose(fast.kernel_.theta, skopt_gp.kernel_.theta)


# Each fit's log-prior on the length scales l: the long half of Optuna's, and the whole.
PRIOR_LOGS = [
    (LongScalePriorGP, lambda scales: -LENGTH_SCALE_PRIOR * np.sum(scales**2)),
    (PriorGP, lambda scales: -LENGTH_SCALE_PRIOR * np.sum(scales**2 + scales**-2)),
]


@pytest.mark.parametrize(("cls", "log_prior"), PRIOR_LOGS, ids=["long", "whole"])
def test_the_prior_adds_its_log_and_gradient_to_the_likelihood(cls: type[FastGP], log_prior: Any) -> None:
    _, fast, X, y = pair(SPACE6, 30)
    prior = cls(**fast.get_params(deep=False)).fit(X, y)
    scales = np.array([0.3, 0.8, 2.0, 1.5, 0.5, 4.0])
    theta = np.log(np.r_[1.2, scales, 1e-3])  # amplitude, length scales, noise
    plain, plain_grad = fast.log_marginal_likelihood(theta, eval_gradient=True)
    got, got_grad = prior.log_marginal_likelihood(theta, eval_gradient=True)
    assert got == pytest.approx(plain + log_prior(scales), rel=1e-12)
    step = 1e-6  # the gradient in log-parameters, against central differences
    numeric = [
        (prior.log_marginal_likelihood(theta + e) - prior.log_marginal_likelihood(theta - e)) / (2 * step)
        for e in np.eye(len(theta)) * step
    ]
    np.testing.assert_allclose(got_grad, numeric, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got_grad, plain_grad)


@pytest.mark.parametrize("cls", [LongScalePriorGP, PriorGP], ids=["long", "whole"])
def test_the_prior_keeps_an_unresolved_dimension_from_a_straight_line(cls: type[FastGP]) -> None:
    """A dimension the losses barely depend on: the free fit runs its length scale to the bound."""
    space = Space([Real(0.0, 1.0) for _ in range(3)])
    X = space.transform(space.rvs(15, random_state=2))
    y = np.sin(6 * X[:, 0]) + 0.01 * X[:, 2]
    params = skopt_settings(space)
    free = FastGP(**params).fit(X, y).kernel_.k1.k2.length_scale
    held = cls(**params).fit(X, y).kernel_.k1.k2.length_scale
    assert free[2] > 50 and held[2] < 10
    assert abs(np.log(held[0]) - np.log(free[0])) < 1.0  # the resolved dimension keeps its scale


def test_the_long_half_resolves_a_wiggly_dimension_and_keeps_its_scale_short() -> None:
    """A loss that oscillates along one dimension (period 0.25), as a multimodal one does: the free
    fit takes the wiggles for noise and writes that dimension off; both priors resolve it, the
    whole one at a longer scale, smoothing what it resolved."""
    space = Space([Real(0.0, 1.0) for _ in range(2)])
    X = space.transform(space.rvs(30, random_state=4))
    y = np.sin(25 * X[:, 0]) + X[:, 1]
    params = skopt_settings(space)
    free, half, whole = (
        cls(**params).fit(X, y).kernel_.k1.k2.length_scale for cls in (FastGP, LongScalePriorGP, PriorGP)
    )
    assert free[0] > 50 and half[0] < 0.15 and whole[0] > 1.3 * half[0]


def test_the_leave_one_out_density_is_each_trial_predicted_from_the_others() -> None:
    _, fast, X, y = pair(SPACE6, 25)
    standardized = (y - fast.y_train_mean_) / fast.y_train_std_
    brute = 0.0
    for i in range(len(y)):
        others = np.arange(len(y)) != i
        gp = frozen(fast)
        gp.normalize_y = False  # the closed form is on the fitted GP's standardized targets
        gp.fit(X[others], standardized[others])
        mean, std = gp.predict(X[i : i + 1], return_std=True)
        var = std[0] ** 2 + fast.noise_  # a held-out observation carries the noise
        brute += -0.5 * np.log(2 * np.pi * var) - 0.5 * (standardized[i] - mean[0]) ** 2 / var
    assert loo_log_density(fast) == pytest.approx(brute, rel=1e-6)


def _both_fits(X: np.ndarray, y: np.ndarray, space: Space) -> tuple[FastGP, PriorGP]:
    params = skopt_settings(space)
    return FastGP(**params).fit(X, y), PriorGP(**params).fit(X, y)


def test_the_prior_predicts_better_where_few_trials_leave_a_dimension_unresolved() -> None:
    space = Space([Real(0.0, 1.0) for _ in range(4)])
    X = space.transform(space.rvs(12, random_state=3))
    free, held = _both_fits(X, np.sin(5 * X[:, 0]) + np.cos(4 * X[:, 1]) + X[:, 2] ** 2, space)
    assert loo_log_density(held) > loo_log_density(free)


def test_the_free_fit_predicts_better_where_many_trials_pin_the_scales() -> None:
    space = Space([Real(0.0, 1.0) for _ in range(2)])
    X = space.transform(space.rvs(60, random_state=3))
    free, held = _both_fits(X, np.sin(3 * X[:, 0]) + 0.0 * X[:, 1], space)
    assert loo_log_density(free) > loo_log_density(held)
