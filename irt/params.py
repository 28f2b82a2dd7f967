"""Item parameters of the multidimensional 2PL, P_i(θ) = σ(α_iᵀθ − β_i).

The parametrisation of tinyBenchmarks (Polo et al. 2024, eq. 3.1) and MERGE³ (Mencattini
et al. 2025). The unidimensional 2PL σ(a_i(θ − b_i)) is the case D = 1 with α_i = a_i and
β_i = a_i·b_i. Shapes: alpha (N, D), beta (N,), theta (M, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ItemParams", "sigmoid"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


@dataclass(frozen=True, slots=True)
class ItemParams:
    """Discriminations ``alpha`` (N, D) and intercepts ``beta`` (N,)."""

    alpha: np.ndarray
    beta: np.ndarray

    def __post_init__(self) -> None:
        alpha = np.atleast_2d(np.asarray(self.alpha, dtype=float))
        beta = np.asarray(self.beta, dtype=float).reshape(-1)
        if alpha.shape[0] != beta.shape[0]:
            alpha = alpha.T if alpha.shape[1] == beta.shape[0] else alpha
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        if alpha.shape[0] != beta.shape[0]:
            raise ValueError(f"alpha {alpha.shape} and beta {beta.shape} disagree on N.")

    @property
    def n_items(self) -> int:
        return int(self.beta.shape[0])

    @property
    def dims(self) -> int:
        return int(self.alpha.shape[1])

    def subset(self, items: np.ndarray) -> ItemParams:
        return ItemParams(self.alpha[items], self.beta[items])

    def logits(self, theta: np.ndarray) -> np.ndarray:
        """(M, D) abilities → (M, N) logits α_iᵀθ_m − β_i."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        return theta @ self.alpha.T - self.beta

    def prob(self, theta: np.ndarray) -> np.ndarray:
        """(M, D) abilities → (M, N) probabilities of a correct answer."""
        return sigmoid(self.logits(theta))

    def fisher_information(self, theta: np.ndarray) -> np.ndarray:
        """Trace of each item's Fisher information at each θ: ‖α_i‖²·P(1−P), shape (M, N)."""
        p = self.prob(theta)
        return p * (1.0 - p) * np.sum(self.alpha**2, axis=1)

    def two_pl(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of the 2PL form σ(a(θ − b)); only for D = 1."""
        if self.dims != 1:
            raise ValueError("two_pl() needs D = 1.")
        a = self.alpha[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(np.abs(a) > 1e-12, self.beta / a, np.nan)
        return a, b
