"""Joint-MAP calibration of σ(α_iᵀθ_m − β_i) in numpy (no Pyro), the default engine.

The fallback engine of IRT.md, and the fast one: where py-irt cannot install (Python ≥ 3.12)
calibration still works. Gaussian priors θ ~ N(0, I), α ~ N(0, σ_α²), β ~ N(0, σ_β²) make
the joint mode finite; missing responses are masked out. Model of tinyBenchmarks (Polo et al.
2024). The optimiser is irt.lbfgs (L-BFGS with a loss-change stop); scipy's L-BFGS-B, the
engine's optimiser before, stays selectable (``optimizer="scipy-lbfgsb"``) as a reference.
The registry name "scipy" is kept: banks and configs name it.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

from irt.errors import IRTError
from irt.lbfgs import minimize_lbfgs
from irt.params import ItemParams

__all__ = ["ScipyFit", "ScipyEngine", "fit_joint_map", "initial_values", "scipy_engine",
           "OPTIMIZERS", "pad_start"]

OPTIMIZERS = ("lbfgs", "scipy-lbfgsb")


@dataclass(frozen=True, slots=True)
class ScipyFit:
    params: ItemParams
    theta: np.ndarray  # (M, D)
    neg_log_posterior: float
    iterations: int
    converged: bool
    evaluations: int = 0  # objective + gradient evaluations
    seconds: float = 0.0  # wall time of the optimiser


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


def _blas_threads(n: int | None) -> AbstractContextManager[object]:
    """Limit BLAS threads for the fit: its products are small (M × N × D, D ≤ 15), and two
    OpenBLAS threads on a loaded 2-core machine were 7–10× slower than one (they spin while
    waiting for each other; benchmarks/irt/calibration_time.md)."""
    if n is None:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return nullcontext()
    return threadpool_limits(n, user_api="blas")


class _JointObjective:
    """Negative log posterior of (θ, α, β) and its gradient, on preallocated buffers.

    Bernoulli terms log(1 + e^z) − y·z with z = θαᵀ − β (missing entries masked), plus
    Gaussian priors. ``fix_items`` keeps α, β fixed and differentiates in θ only.
    """

    def __init__(self, scores: np.ndarray, dims: int, sigma_alpha: float, sigma_beta: float,
                 fixed: tuple[np.ndarray, np.ndarray] | None) -> None:
        raw = np.asarray(scores, dtype=float)
        missing = np.isnan(raw)
        self.mask = None if not missing.any() else (~missing).astype(float)
        self.y = np.nan_to_num(raw, nan=0.0)
        self.n_models, self.n_items = raw.shape
        self.dims = dims
        self.fixed = fixed
        self.prec_alpha, self.prec_beta = 1.0 / sigma_alpha**2, 1.0 / sigma_beta**2
        self.z, self.e, self.terms, self.g = (np.empty(raw.shape) for _ in range(4))

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_theta = self.n_models * self.dims
        theta = x[:n_theta].reshape(self.n_models, self.dims)
        if self.fixed is not None:
            return theta, *self.fixed
        n_alpha = self.n_items * self.dims
        return theta, x[n_theta:n_theta + n_alpha].reshape(self.n_items, self.dims), \
            x[n_theta + n_alpha:]

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, alpha, beta = self.unpack(x)
        z, e, terms, g = self.z, self.e, self.terms, self.g
        np.matmul(theta, alpha.T, out=z)
        z -= beta
        np.abs(z, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)  # e = exp(−|z|) ∈ (0, 1]: no overflow on either side
        # log(1 + e^z) = max(z, 0) + log1p(e);  σ(z) = (1 if z ≥ 0 else e) / (1 + e)
        np.log1p(e, out=terms)
        np.maximum(z, 0.0, out=g)
        terms += g
        np.greater_equal(z, 0.0, out=g, casting="unsafe")
        np.copyto(g, e, where=z < 0)
        e += 1.0
        g /= e
        g -= self.y
        if self.mask is not None:  # y is 0 where missing, so y·z needs no mask
            terms *= self.mask
            g *= self.mask
        nll = float(terms.sum()) - float(np.vdot(self.y, z))
        prior = 0.5 * float(np.vdot(theta, theta))
        grad_theta = g @ alpha + theta
        if self.fixed is not None:
            return nll + prior, grad_theta.ravel()
        prior += 0.5 * (self.prec_alpha * float(np.vdot(alpha, alpha))
                        + self.prec_beta * float(np.vdot(beta, beta)))
        grad_alpha = g.T @ theta + self.prec_alpha * alpha
        grad_beta = self.prec_beta * beta - g.sum(axis=0)
        return nll + prior, np.concatenate([grad_theta.ravel(), grad_alpha.ravel(), grad_beta])


def pad_start(theta: np.ndarray, alpha: np.ndarray, beta: np.ndarray, dims: int,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A D-dimensional start from a fit with fewer dimensions (warm start across D).

    The new columns of θ and α are small random values (0.1·N(0, 1), the scale of
    :func:`initial_values`), not zeros: with both zero their gradients vanish and the
    optimiser would never leave the lower-dimensional solution.
    """
    have = theta.shape[1]
    if dims < have:
        raise IRTError(f"pad_start: cannot pad a D = {have} start down to D = {dims}.",
                       fix="warm-start from a fit with at most as many dimensions.")
    rng = np.random.default_rng(seed)
    extra = dims - have
    return (np.hstack([theta, 0.1 * rng.standard_normal((theta.shape[0], extra))]),
            np.hstack([alpha, 0.1 * rng.standard_normal((alpha.shape[0], extra))]),
            np.array(beta, dtype=float))


def fit_joint_map(scores: np.ndarray, dims: int, *, sigma_alpha: float = 2.0,
                  sigma_beta: float = 3.0, max_iter: int = 2000, tol: float = 1e-7,
                  init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  fix_items: bool = False, seed: int = 0, optimizer: str = "lbfgs",
                  blas_threads: int | None = 1) -> ScipyFit:
    """Maximise the joint posterior of abilities and item parameters.

    ``scores`` (M, N) in {0, 1} or fractional, NaN = missing. ``init`` = (θ, α, β) warm
    start (recalibration). ``fix_items`` keeps α, β at ``init`` and fits θ only.
    ``optimizer``: "lbfgs" (irt.lbfgs; stops when the loss falls by less than ``tol``
    relative per iteration over 10 iterations) or "scipy-lbfgsb" (scipy's L-BFGS-B to
    gtol ``tol``, the engine before 2026-12: kept as the reference optimum for tests and
    benchmarks). ``blas_threads``: BLAS threads during the fit (None: leave as set).
    """
    if optimizer not in OPTIMIZERS:
        raise IRTError(f"Unknown optimizer {optimizer!r}.",
                       fix=f"use one of {', '.join(OPTIMIZERS)}.")
    if init is None and fix_items:
        raise IRTError("fix_items needs init = (θ, α, β): the items to keep fixed.",
                       fix="pass init from a calibrated bank.")
    theta0, alpha0, beta0 = init if init is not None else initial_values(scores, dims, seed)
    alpha0, beta0 = np.asarray(alpha0, float), np.asarray(beta0, float)
    objective = _JointObjective(scores, dims, sigma_alpha, sigma_beta,
                                (alpha0, beta0) if fix_items else None)
    parts = [np.asarray(theta0, float).ravel()]
    if not fix_items:
        parts += [alpha0.ravel(), beta0.ravel()]
    x0 = np.concatenate(parts)
    started = time.perf_counter()
    with _blas_threads(blas_threads):
        if optimizer == "lbfgs":
            result = minimize_lbfgs(objective, x0, max_iter=max_iter, rtol=tol)
            x, value, iterations, evaluations, converged = (
                result.x, result.fun, result.iterations, result.evaluations,
                result.converged)
        else:
            from scipy.optimize import minimize

            found = minimize(objective, x0, jac=True, method="L-BFGS-B",
                             options={"maxiter": max_iter, "ftol": tol * 1e-2, "gtol": tol,
                                      "maxcor": 20})
            x, value, iterations, evaluations, converged = (
                found.x, float(found.fun), int(found.nit), int(found.nfev),
                bool(found.success))
    theta, alpha, beta = objective.unpack(x)
    return ScipyFit(ItemParams(alpha.copy(), beta.copy()), theta.copy(), float(value),
                    iterations, converged, evaluations, time.perf_counter() - started)


class ScipyEngine:
    """The joint-MAP engine behind ``calibrate(engine="scipy")`` (``epochs`` unused)."""

    def fit(self, scores: np.ndarray, dims: int, *, epochs: int, seed: int,
            init: tuple[np.ndarray, np.ndarray, np.ndarray] | None
            ) -> tuple[ItemParams, np.ndarray]:
        fit = fit_joint_map(scores, dims, init=init, seed=seed)
        return fit.params, fit.theta


scipy_engine = ScipyEngine()
