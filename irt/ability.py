"""Ability fits by MAP: θ̂ for p-IRT (tinyBenchmarks) and merge weights λ for mp-IRT (MERGE³).

Both are a Bayesian logistic regression with a Gaussian prior, solved by batched damped
Newton steps: logits = X_b w_b + offset, with X_b = α_S (abilities) or α_S Θ_Eᵀ (merge
weights over endpoint abilities Θ_E). The Laplace covariance gives the standard errors.
Shapes: X (B, n, K), offset (n,), y and mask (B, n), w (B, K).
"""

from __future__ import annotations

import numpy as np

from irt.params import ItemParams, sigmoid

__all__ = ["map_logistic", "fit_abilities", "fit_merge_weights", "ability_prior"]


def _objective(w: np.ndarray, x: np.ndarray, offset: np.ndarray, y: np.ndarray,
               mask: np.ndarray, mean: np.ndarray, prec: np.ndarray) -> np.ndarray:
    z = np.einsum("bnk,bk->bn", x, w) + offset
    nll = np.sum(mask * (np.logaddexp(0.0, z) - y * z), axis=1)
    d = w - mean
    return nll + 0.5 * np.einsum("bk,kl,bl->b", d, prec, d)


def map_logistic(x: np.ndarray, offset: np.ndarray, y: np.ndarray, mask: np.ndarray,
                 prior_mean: np.ndarray, prior_cov: np.ndarray, max_iter: int = 50,
                 tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mode and Laplace covariance of w per batch row: (B, K) and (B, K, K)."""
    batch, _, k = x.shape
    prec = np.linalg.inv(prior_cov)
    mean = np.broadcast_to(prior_mean, (batch, k)).astype(float)
    w = mean.copy()
    y = np.nan_to_num(y, nan=0.0)
    mask = mask.astype(float)
    current = _objective(w, x, offset, y, mask, mean, prec)
    for _ in range(max_iter):
        z = np.einsum("bnk,bk->bn", x, w) + offset
        p = sigmoid(z)
        grad = np.einsum("bn,bnk->bk", mask * (p - y), x) + (w - mean) @ prec
        hess = np.einsum("bn,bnk,bnl->bkl", mask * p * (1 - p), x, x) + prec
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        scale = np.ones(batch)
        for _ in range(20):  # halve steps that do not decrease the objective
            trial = w - scale[:, None] * step
            value = _objective(trial, x, offset, y, mask, mean, prec)
            worse = value > current + 1e-12
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        w = np.where(worse[:, None], w, trial)  # rows that never improved stay put
        value = np.where(worse, current, value)
        improvement = current - value
        current = value
        if np.max(np.abs(scale[:, None] * step)) < tol or np.max(improvement) < tol * 1e-3:
            break
    z = np.einsum("bnk,bk->bn", x, w) + offset
    p = sigmoid(z)
    hess = np.einsum("bn,bnk,bnl->bkl", mask * p * (1 - p), x, x) + prec
    return w, np.linalg.inv(hess)


def ability_prior(theta_population: np.ndarray, inflate: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian prior for new abilities: the calibration population's mean and covariance."""
    mean = theta_population.mean(axis=0)
    cov = np.atleast_2d(np.cov(theta_population, rowvar=False))
    cov = inflate * cov + 1e-3 * np.eye(cov.shape[0])
    return mean, cov


def fit_abilities(params: ItemParams, responses: np.ndarray, prior_mean: np.ndarray,
                  prior_cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MAP abilities θ̂ (B, D) and their covariance (B, D, D) from responses (B, n) to
    the n items of ``params`` (NaN = not answered)."""
    responses = np.atleast_2d(np.asarray(responses, dtype=float))
    x = np.broadcast_to(params.alpha, (responses.shape[0], *params.alpha.shape))
    return map_logistic(x, -params.beta, responses, ~np.isnan(responses), prior_mean,
                        prior_cov)


def fit_merge_weights(params: ItemParams, responses: np.ndarray, endpoint_theta: np.ndarray,
                      prior_sd: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """MERGE³ mp-IRT: λ (B, K) maximising the likelihood of θ̃ = Σ_k λ_k θ_k on anchors.

    ``endpoint_theta`` (B, K, D): the K endpoint abilities of each of the B models. Prior
    λ ~ N(1/K, prior_sd²) keeps a two-item anchor set from sending λ to infinity.
    """
    responses = np.atleast_2d(np.asarray(responses, dtype=float))
    k = endpoint_theta.shape[1]
    x = np.einsum("nd,bkd->bnk", params.alpha, endpoint_theta)
    return map_logistic(x, -params.beta, responses, ~np.isnan(responses),
                        np.full(k, 1.0 / k), prior_sd**2 * np.eye(k))
