"""AIPW accuracy estimate from anchor responses (Zhang et al. 2025, "Benchmark prediction
from fewer data misses the mark").

ȳ_S + (mean_{i∉S} f̂ − mean_S f̂)/(1 + n/N), f̂ a ridge regression of each item's
correctness on the anchors' across the bank's models, cross-fitted on S (each anchor's
f̂ leaves that anchor out). Shapes: responses (M, N) of the bank; y (B, k), NaN for
unanswered anchors; outputs (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RidgeFit", "fit_ridge", "aipw_estimate"]


@dataclass(frozen=True)
class RidgeFit:
    """Per-item fill values, the ridge of the other items on the anchors, and the
    leave-one-anchor-out fits (``(None, fill)`` where an anchor has no other anchor)."""

    col_mean: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    loo: list


def fit_ridge(responses: np.ndarray, anchor_indices: np.ndarray, rest: np.ndarray) -> RidgeFit:
    """Ridge of all items outside the anchors on the anchors, across the bank's models."""
    from sklearn.linear_model import Ridge, RidgeCV

    col_mean = np.nan_to_num(np.nanmean(responses, axis=0), nan=0.5)
    filled = np.where(np.isnan(responses), col_mean, responses)
    x = filled[:, anchor_indices]
    alphas = np.logspace(-2, 3, 11)
    model = RidgeCV(alphas=alphas).fit(x, filled[:, rest])
    loo = []
    k = anchor_indices.size
    for j in range(k):  # f̂ for anchor j must not see y_j
        others = np.delete(np.arange(k), j)
        if others.size == 0:
            loo.append((None, float(col_mean[anchor_indices[j]])))
            continue
        fit = Ridge(alpha=float(model.alpha_)).fit(x[:, others], x[:, j])
        loo.append((fit, others))
    return RidgeFit(col_mean, model.coef_, np.atleast_1d(model.intercept_), loo)


def _predictions(fit: RidgeFit, y: np.ndarray, indices: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """f̂'s mean prediction over the unanswered items (B,) and its leave-one-out
    predictions of the answered ones (B, k); a missing answer is its column mean."""
    x = np.where(np.isnan(y), fit.col_mean[indices], y)
    f_rest = np.clip(x @ fit.coef.T + fit.intercept, 0, 1).mean(axis=1)
    f_anchor = np.empty_like(x)
    for j, (model, others) in enumerate(fit.loo):
        f_anchor[:, j] = others if model is None else model.predict(x[:, others])
    return f_rest, np.clip(f_anchor, 0, 1)


def aipw_estimate(fit: RidgeFit, y: np.ndarray, anchor_indices: np.ndarray,
                  weights: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """AIPW values and standard errors (B,) from anchor responses ``y`` (B, k)."""
    f_rest, f_anchor = _predictions(fit, y, anchor_indices)
    mask = ~np.isnan(y)
    w = np.where(mask, weights, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    n = mask.sum(axis=1)
    y_bar = np.sum(w * np.nan_to_num(y), axis=1)
    f_s = np.sum(w * f_anchor, axis=1)
    value = y_bar + (f_rest - f_s) / (1 + n / n_items)
    resid = np.where(mask, np.nan_to_num(y) - f_anchor, 0.0)
    centred = resid - np.sum(w * resid, axis=1, keepdims=True)
    var = np.sum(w**2 * centred**2 * mask, axis=1) * n / np.maximum(n - 1, 1)
    return np.clip(value, 0, 1), np.sqrt(var)


def aipw_union_estimate(fit: RidgeFit, y: np.ndarray, indices: np.ndarray,
                        weights: np.ndarray, core: np.ndarray, n_items: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """AIPW on a core + top-up union: the n answered items are known exactly, the other
    N − n are f̂'s mean over them corrected by the core's weighted mean of y − f̂ (the
    core is the only sample of the bank, Zhang et al. 2025's design part):
    (n/N)·ȳ_answered + (1 − n/N)·(mean_rest f̂ + Σ_core w (y − f̂)). With no top-ups this
    is the static formula to first order in n/N; s.e. (1 − n/N) times the weighted s.d.
    of the core's residuals."""
    f_rest, f_anchor = _predictions(fit, y, indices)
    answered = ~np.isnan(y)
    sample = answered & core
    w = np.where(sample, weights, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    resid = np.where(sample, np.nan_to_num(y) - f_anchor, 0.0)
    correction = np.sum(w * resid, axis=1)
    n = answered.sum(axis=1)
    frac = n / n_items
    observed = np.nansum(y, axis=1) / np.maximum(n, 1)
    value = frac * observed + (1 - frac) * (f_rest + correction)
    n_core = sample.sum(axis=1)
    centred = resid - correction[:, None]
    var = np.sum(w**2 * centred**2 * sample, axis=1) * n_core / np.maximum(n_core - 1, 1)
    return np.clip(value, 0, 1), (1 - frac) * np.sqrt(var)
