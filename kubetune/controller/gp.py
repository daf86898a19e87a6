"""skopt's Gaussian process, the same model, with its two hot loops computed by BLAS.

``suggest`` spends its time in two places once a study is long
(bench/search_scale.py; profiled at 1,000 trials of a 6-d space):

* the kernel fit: L-BFGS with restarts over the log marginal likelihood,
  about 200 evaluations of it and its gradient. scikit-learn builds the
  gradient as an (n, n, hyperparameters) tensor through the kernel tree
  (80 % of the fit); for skopt's kernel, ConstantKernel * Matern(nu=2.5,
  one length scale per dimension) + WhiteKernel, the same gradient is a few
  (n, n) products;
* the acquisition: EI's mean and standard deviation at 2,000-10,000
  candidates and, with their gradients, at each L-BFGS step of the polishing.
  skopt sums ``einsum("ki,kj,ij->k", ...)``, an unblocked O(points x n^2)
  loop; the same sums as matrix products take milliseconds.

Both compute what skopt and scikit-learn compute, to rounding
(tests/test_gp.py); any other kernel (a space with categorical dimensions:
skopt's HammingKernel) takes scikit-learn's path. ``LongScalePriorGP`` and
``PriorGP`` add a prior on the length scales to the fit, the long half of
Optuna's and the whole; ``loo_log_density`` scores a fit by how well it
predicts each trial from the others (kubetune/controller/search/gp.py
chooses between the two fits by it).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
from scipy.linalg import cho_solve, cholesky, lapack
from scipy.spatial.distance import pdist, squareform
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, Product, Sum, WhiteKernel
from skopt.learning import GaussianProcessRegressor

SQRT5 = math.sqrt(5.0)
# Optuna GPSampler's log-prior on each length scale l of the normalised space: -0.1 (l^2 + 1/l^2),
# highest at l = 1. Its share of the log-likelihood shrinks as trials accrue.
LENGTH_SCALE_PRIOR = 0.1


class FastGP(GaussianProcessRegressor):  # type: ignore[misc]
    """skopt's GaussianProcessRegressor; the likelihood and the predictions computed faster."""

    # The weights of the length scales' log-prior in the fit, -long sum(l^2) - short sum(1/l^2):
    # none, as skopt's GP; LongScalePriorGP and PriorGP add it.
    length_scale_prior: ClassVar[tuple[float, float]] = (0.0, 0.0)

    def log_marginal_likelihood(
        self, theta: Any = None, eval_gradient: bool = False, clone_kernel: bool = True
    ) -> Any:
        fast = theta is not None and self.y_train_.ndim == 1
        if not fast or not is_matern52_ard(self.kernel_, self.X_train_.shape[1]):
            return super().log_marginal_likelihood(theta, eval_gradient, clone_kernel)
        return matern52_lml(
            np.exp(theta), self.X_train_, self.y_train_, self.alpha, eval_gradient, *self.length_scale_prior
        )

    def predict(
        self,
        X: Any,
        return_std: bool = False,
        return_cov: bool = False,
        return_mean_grad: bool = False,
        return_std_grad: bool = False,
    ) -> Any:
        X = np.atleast_2d(X)
        several = len(X) > 1 and (return_mean_grad or return_std_grad)  # skopt refuses those
        if not return_std or return_cov or several or not hasattr(self, "X_train_"):
            return super().predict(X, return_std, return_cov, return_mean_grad, return_std_grad)
        k = self.kernel_(X, self.X_train_)
        mean = self.y_train_std_ * k.dot(self.alpha_) + self.y_train_mean_
        v = k.dot(self.K_inv_)  # one pass over K^-1 serves the variance and its gradient
        var = self.kernel_.diag(X) - np.sum(v * k, axis=1)
        std = np.sqrt(np.maximum(var, 0.0) * self.y_train_std_**2)
        if not return_mean_grad:
            return mean, std
        grad = self.kernel_.gradient_x(X[0], self.X_train_)
        grad_mean = grad.T.dot(self.alpha_) * self.y_train_std_
        if not return_std_grad:
            return mean, std, grad_mean
        grad_std = np.zeros(X.shape[1])
        if not np.allclose(std, grad_std):
            grad_std = -v.dot(grad)[0] / std * self.y_train_std_**2
        return mean, std, grad_mean, grad_std


class LongScalePriorGP(FastGP):
    """FastGP whose kernel fit maximises the likelihood plus the long half of Optuna's log-prior,
    -0.1 l^2 on each length scale l.

    Without it, a dimension the trials have barely resolved gets a length scale
    at the bound of 100, as if the loss did not depend on it, and no later ask
    moves it: on log_bowl4, half the seeds ended with its third dimension at
    its bound (BENCHMARKS.md section 14). Unlike the whole prior (PriorGP) it
    leaves short length scales free, which multimodal losses need. Only for
    skopt's Matern kernel, as PriorGP.
    """

    length_scale_prior = (LENGTH_SCALE_PRIOR, 0.0)


class PriorGP(FastGP):
    """FastGP whose kernel fit maximises the likelihood plus Optuna's log-prior on the length scales,
    -0.1 (l^2 + 1/l^2), highest at l = 1.

    Where the trials are few, a fit that assumes every dimension matters
    about as much as the others can predict them better than one that reads
    each scale from them (kubetune/controller/search/gp.py chooses). Only for
    skopt's Matern kernel (any space with a numeric dimension): the Hamming
    kernel's fit has no prior.
    """

    length_scale_prior = (LENGTH_SCALE_PRIOR, LENGTH_SCALE_PRIOR)


# Each fit by the prior on its length scales: none (skopt's GP), the long half of Optuna's, or the whole.
Prior = Literal["none", "long", "whole"]
WITH_PRIOR: dict[Prior, type[FastGP]] = {"none": FastGP, "long": LongScalePriorGP, "whole": PriorGP}


def loo_log_density(fitted: GaussianProcessRegressor) -> float:
    """The log density of each training target under the GP conditioned on the others, summed.

    In closed form from the fitted K^-1 (Rasmussen & Williams, eq. 5.10-5.12):
    trial i's held-out mean misses it by alpha_i / [K^-1]_ii, with variance
    1 / [K^-1]_ii. Unlike the evidence it does not count a prior's log, so a
    fit with a prior and one without compare on equal terms; on the
    standardized targets, the same for two fits to the same losses.
    """
    precision = np.diag(fitted.K_inv_)
    return float(np.sum(0.5 * np.log(precision / (2 * np.pi)) - 0.5 * fitted.alpha_**2 / precision))


def is_matern52_ard(kernel: Any, dims: int) -> bool:
    """ConstantKernel * Matern(nu=2.5, one length scale per dimension) + WhiteKernel, nothing fixed.

    Asked at every likelihood evaluation: read from the parameters, not from
    the kernel's ``theta`` and ``hyperparameters``, which build lists.
    """
    if (
        not isinstance(kernel, Sum)
        or not isinstance(kernel.k1, Product)
        or not isinstance(kernel.k2, WhiteKernel)
    ):
        return False
    amplitude, matern = kernel.k1.k1, kernel.k1.k2
    bounds = (amplitude.constant_value_bounds, getattr(matern, "length_scale_bounds", None),
              kernel.k2.noise_level_bounds)  # fmt: skip
    return (
        isinstance(amplitude, ConstantKernel)
        and isinstance(matern, Matern)
        and matern.nu == 2.5
        and np.ndim(matern.length_scale) == 1
        and len(matern.length_scale) == dims
        and not any(isinstance(b, str) and b == "fixed" for b in bounds)
    )


def matern52_lml(
    params: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    jitter: float,
    eval_gradient: bool,
    long: float = 0.0,
    short: float = 0.0,
) -> Any:
    """The log marginal likelihood of y under the kernel, and its gradient in log-parameters.

    ``params``: the amplitude, the length scales, the noise level (the
    kernel's theta, exponentiated). The gradient is 0.5 tr((a a^T - K^-1)
    dK/dtheta) (Rasmussen & Williams, eq. 5.9), each trace an (n, n) sum.
    ``long``, ``short``: adds -long l^2 - short / l^2 for each length scale l
    (FastGP.length_scale_prior).
    """
    amplitude, scales, noise = params[0], params[1:-1], params[-1]
    z = X / scales
    r5 = SQRT5 * squareform(pdist(z, metric="euclidean"))
    decay = np.exp(-r5)
    corr = amplitude * (1.0 + r5 + r5**2 / 3.0) * decay
    K = corr.copy()
    K[np.diag_indices_from(K)] += noise + jitter
    try:
        L = cholesky(K, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return (-np.inf, np.zeros_like(params)) if eval_gradient else -np.inf
    alpha = cho_solve((L, True), y, check_finite=False)
    lml = -0.5 * y.dot(alpha) - np.log(np.diag(L)).sum() - len(y) / 2 * np.log(2 * np.pi)
    lml -= long * np.sum(scales**2) + short * np.sum(scales**-2)
    if not eval_gradient:
        return lml
    inner = np.outer(alpha, alpha) - _inverse(L)
    # d corr / d log(scale_k) = amplitude * 5/3 (1 + r5) e^-r5 (z_ik - z_jk)^2; summed against
    # the symmetric weights w: sum_ij w_ij (z_ik - z_jk)^2 = 2 (w 1 . z_k^2 - z_k . w z_k).
    w = inner * (amplitude * 5.0 / 3.0 * (1.0 + r5) * decay)
    scale_grad = w.sum(axis=1).dot(z**2) - np.sum(z * w.dot(z), axis=0)
    scale_grad -= 2 * (long * scales**2 - short * scales**-2)  # d/d log l of the prior's log
    grad = np.concatenate([[0.5 * np.sum(inner * corr)], scale_grad, [0.5 * noise * np.trace(inner)]])
    return lml, grad


def _inverse(L: np.ndarray) -> np.ndarray:
    """K^-1 from K's lower Cholesky factor (LAPACK potri: a third of two triangular solves)."""
    inv, info = lapack.dpotri(L, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotri: {info}")
    full: np.ndarray = np.tril(inv) + np.tril(inv, -1).T  # potri computes the lower triangle only
    return full
