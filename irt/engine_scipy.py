"""Joint-MAP calibration of σ(α_iᵀθ_m − β_i) by L-BFGS (numpy/scipy, no Pyro).

The fallback engine of IRT.md: where py-irt cannot install (Python ≥ 3.12) calibration
still works. Gaussian priors θ ~ N(0, I), α ~ N(0, σ_α²), β ~ N(0, σ_β²) make the joint
mode finite; missing responses are masked out. Model of tinyBenchmarks (Polo et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from irt.params import ItemParams

__all__ = ["ScipyFit", "ScipyEngine", "fit_joint_map", "initial_values", "scipy_engine"]


@dataclass(frozen=True, slots=True)
class ScipyFit:
    params: ItemParams
    theta: np.ndarray  # (M, D)
    neg_log_posterior: float
    iterations: int
    converged: bool


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.02, 0.98)
    return np.log(p / (1 - p))


def initial_values(scores: np.ndarray, dims: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Data-driven start: θ from model accuracies, β from item accuracies, small α.

    The first dimension's signs are set so that higher θ means more correct answers.
    """
    rng = np.random.default_rng(seed)
    observed = ~np.isnan(scores)
    model_acc = np.nanmean(np.where(observed, scores, np.nan), axis=1)
    item_acc = np.nanmean(np.where(observed, scores, np.nan), axis=0)
    model_acc = np.nan_to_num(model_acc, nan=0.5)
    item_acc = np.nan_to_num(item_acc, nan=0.5)
    z = _logit(model_acc)
    z = (z - z.mean()) / (z.std() + 1e-9)
    theta = 0.1 * rng.standard_normal((scores.shape[0], dims))
    theta[:, 0] = z
    alpha = 0.1 * rng.standard_normal((scores.shape[1], dims))
    alpha[:, 0] = 1.0
    beta = -_logit(item_acc)
    return theta, alpha, beta


def fit_joint_map(scores: np.ndarray, dims: int, *, sigma_alpha: float = 2.0,
                  sigma_beta: float = 3.0, max_iter: int = 2000, tol: float = 1e-7,
                  init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  fix_items: bool = False, seed: int = 0) -> ScipyFit:
    """Maximise the joint posterior of abilities and item parameters.

    ``scores`` (M, N) in {0, 1} or fractional, NaN = missing. ``init`` = (θ, α, β) warm
    start (recalibration). ``fix_items`` keeps α, β at ``init`` and fits θ only.
    """
    y = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
    missing = np.isnan(np.asarray(scores, dtype=float))
    mask = None if not missing.any() else (~missing).astype(float)
    n_models, n_items = y.shape
    theta0, alpha0, beta0 = init if init is not None else initial_values(scores, dims, seed)
    n_theta, n_alpha = n_models * dims, n_items * dims

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = x[:n_theta].reshape(n_models, dims)
        if fix_items:
            return theta, alpha0, beta0
        alpha = x[n_theta:n_theta + n_alpha].reshape(n_items, dims)
        return theta, alpha, x[n_theta + n_alpha:]

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, alpha, beta = unpack(x)
        z = theta @ alpha.T - beta
        e = np.exp(-np.abs(z))
        # log(1 + e^z) − y·z: the Bernoulli negative log-likelihood (missing entries masked)
        terms = np.maximum(z, 0.0) + np.log1p(e) - y * z
        g = np.where(z >= 0, 1.0, e) / (1.0 + e) - y
        if mask is not None:
            terms *= mask
            g *= mask
        nll = float(terms.sum())
        prior = 0.5 * np.sum(theta**2)
        grad_theta = g @ alpha + theta
        if fix_items:
            return nll + prior, grad_theta.ravel()
        prior += 0.5 * np.sum(alpha**2) / sigma_alpha**2 + 0.5 * np.sum(beta**2) / sigma_beta**2
        grad_alpha = g.T @ theta + alpha / sigma_alpha**2
        grad_beta = -g.sum(axis=0) + beta / sigma_beta**2
        return nll + prior, np.concatenate([grad_theta.ravel(), grad_alpha.ravel(), grad_beta])

    parts = [np.asarray(theta0, float).ravel()]
    if not fix_items:
        parts += [np.asarray(alpha0, float).ravel(), np.asarray(beta0, float).ravel()]
    result = minimize(objective, np.concatenate(parts), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "ftol": tol * 1e-2, "gtol": tol,
                               "maxcor": 20})
    theta, alpha, beta = unpack(result.x)
    return ScipyFit(ItemParams(alpha.copy(), beta.copy()), theta.copy(), float(result.fun),
                    int(result.nit), bool(result.success))


class ScipyEngine:
    """The joint-MAP engine behind ``calibrate(engine="scipy")`` (``epochs`` unused)."""

    def fit(self, scores: np.ndarray, dims: int, *, epochs: int, seed: int,
            init: tuple[np.ndarray, np.ndarray, np.ndarray] | None
            ) -> tuple[ItemParams, np.ndarray]:
        fit = fit_joint_map(scores, dims, init=init, seed=seed)
        return fit.params, fit.theta


scipy_engine = ScipyEngine()
