"""FastGP is skopt's GP: the same likelihood, fit and predictions, to rounding, only faster."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from skopt.learning import GaussianProcessRegressor
from skopt.space import Categorical, Integer, Real, Space
from skopt.utils import cook_estimator

from kubetune.controller.gp import FastGP, is_matern52_ard


def pair(
    space: Space, n: int, seed: int = 0
) -> tuple[GaussianProcessRegressor, FastGP, np.ndarray, np.ndarray]:
    """skopt's GP for ``space`` and a FastGP with the same settings, both fitted to the same n points."""
    rng = np.random.default_rng(seed)
    X = space.transform(space.rvs(n, random_state=seed))
    y = np.sin(3 * X.sum(axis=1)) + 0.05 * rng.standard_normal(n)
    skopt_gp = cook_estimator("GP", space=space, random_state=seed)
    fast = FastGP(**skopt_gp.get_params(deep=False))
    return skopt_gp.fit(X, y), fast.fit(X, y), X, y


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
