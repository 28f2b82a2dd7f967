"""Limited-memory BFGS for smooth unconstrained problems, in numpy, with a loss-change stop.

Why not scipy's L-BFGS-B: on the joint calibration problem (30–50 k unknowns) its Fortran
driver spent more time than the objective itself (40 of 76 s in a 150 × 3000 calibration,
benchmarks/irt/calibration_time.md): its bound machinery costs O(m²n) per iteration, the
two-loop recursion here O(mn). The method is Nocedal & Wright, *Numerical Optimization*
(2nd ed., 2006), Algorithm 7.4 (two-loop recursion, H₀ = γI with γ = sᵀy / yᵀy), with a
backtracking Armijo line search (their Algorithm 3.1, quadratic-interpolation steps).

The stop is a test on the loss, not on the gradient: a calibration is done when the loss has
fallen by less than ``rtol`` (relative, per iteration, averaged over ``window`` iterations).
The joint MAP has flat directions (rotations of θ and α together leave it unchanged), where a
gradient test would keep polishing digits that change no prediction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg.blas import daxpy, ddot

__all__ = ["LbfgsResult", "minimize_lbfgs"]

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True, slots=True)
class LbfgsResult:
    """Minimiser ``x``, its loss and gradient, the work done and why it stopped."""

    x: np.ndarray
    fun: float
    grad: np.ndarray
    iterations: int
    evaluations: int
    converged: bool
    reason: str  # "loss change", "gradient", "line search", "max_iter"


def _direction(grad: np.ndarray, pairs: deque[tuple[np.ndarray, np.ndarray, float]]
               ) -> np.ndarray:
    """−H·grad by the two-loop recursion over the stored (s, y, 1/sᵀy) pairs.

    BLAS level-1 calls (ddot, in-place daxpy): numpy's ``q -= a * y`` allocates a
    temporary per pair, which made this 38% of a D = 15 calibration's time.
    """
    q = np.array(grad, dtype=np.float64)  # a contiguous copy daxpy can update in place
    coefficients = []
    for s, y, rho in reversed(pairs):
        a = rho * ddot(s, q)
        q = daxpy(y, q, a=-a)
        coefficients.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= ddot(s, y) / ddot(y, y)
    else:  # first step: a unit step along −g, no longer than 1 in the largest coordinate
        q /= max(float(np.abs(q).max()), 1.0)
    for (s, y, rho), a in zip(pairs, reversed(coefficients)):
        q = daxpy(s, q, a=a - rho * ddot(y, q))
    return -q


def minimize_lbfgs(fun: Objective, x0: np.ndarray, *, history: int = 20,
                   max_iter: int = 2000, rtol: float = 1e-7, window: int = 10,
                   gtol: float = 1e-6) -> LbfgsResult:
    """Minimise ``fun(x) -> (loss, gradient)`` from ``x0`` (a flat float64 vector).

    Stops when the loss fell by at most ``rtol·window·max(|loss|, 1)`` over the last
    ``window`` iterations, when max|gradient| ≤ ``gtol``, when no step along the search
    direction lowers the loss (the loss is flat to machine precision there), or after
    ``max_iter`` iterations (the only stop reported as not converged).
    """
    x = np.array(x0, dtype=float)
    value, grad = fun(x)
    evaluations, iterations = 1, 0
    pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=history)
    losses = [value]
    reason = "max_iter"
    while iterations < max_iter:
        if float(np.abs(grad).max()) <= gtol:
            reason = "gradient"
            break
        direction = _direction(grad, pairs)
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction (curvature pairs went stale): restart
            pairs.clear()
            direction = _direction(grad, pairs)
            slope = float(grad @ direction)
        step, accepted = 1.0, False
        for _ in range(30):
            trial = x + step * direction
            trial_value, trial_grad = fun(trial)
            evaluations += 1
            if np.isfinite(trial_value) and trial_value <= value + 1e-4 * step * slope:
                accepted = True
                break
            # minimiser of the quadratic through value, slope and trial_value, kept in
            # [0.1, 0.5]·step so that a bad model of the loss cannot stall the search
            curvature = trial_value - value - slope * step
            guess = -slope * step**2 / (2 * curvature) if curvature > 0 else 0.5 * step
            step = float(np.clip(guess, 0.1 * step, 0.5 * step))
        if not accepted:
            reason = "line search"
            break
        s, y = trial - x, np.ascontiguousarray(trial_grad - grad, dtype=np.float64)
        sy = ddot(s, y)
        if sy > 1e-10 * ddot(y, y):  # keep H positive definite: skip flat-curvature pairs
            pairs.append((s, y, 1.0 / sy))
        x, value, grad = trial, trial_value, trial_grad
        iterations += 1
        losses.append(value)
        if len(losses) > window and (losses[-window - 1] - value
                                     <= rtol * window * max(abs(value), 1.0)):
            reason = "loss change"
            break
    return LbfgsResult(x, float(value), grad, iterations, evaluations,
                       reason != "max_iter", reason)
