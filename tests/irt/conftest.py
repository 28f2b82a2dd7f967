"""Shared fixtures: responses simulated from a known 2PL, and a small calibrated bank."""

from __future__ import annotations

import numpy as np
import pytest

from irt import ResponseMatrix, calibrate


def simulate_2pl(n_models: int, n_items: int, seed: int = 0
                 ) -> tuple[ResponseMatrix, np.ndarray, np.ndarray, np.ndarray]:
    """Binary responses from σ(a(θ − b)) with known θ, a, b (tinyBenchmarks' model)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_models)
    a = rng.lognormal(0.0, 0.3, size=n_items)
    b = rng.normal(size=n_items)
    p = 1.0 / (1.0 + np.exp(-a * (theta[:, None] - b)))
    y = (rng.random(p.shape) < p).astype(float)
    tasks = [f"task{i % 3}" for i in range(n_items)]
    matrix = ResponseMatrix(y, [f"model-{m}" for m in range(n_models)],
                            [f"{t}/{i}" for i, t in enumerate(tasks)], tasks)
    return matrix, theta, a, b


@pytest.fixture(scope="session")
def make_2pl():  # noqa: ANN201
    """The simulator itself, for tests that need their own draw."""
    return simulate_2pl


@pytest.fixture(scope="session")
def simulated() -> tuple[ResponseMatrix, np.ndarray, np.ndarray, np.ndarray]:
    return simulate_2pl(300, 160, seed=1)


@pytest.fixture(scope="session")
def small_bank(simulated):  # noqa: ANN001, ANN201
    matrix = simulated[0]
    return calibrate(matrix.select_models(range(240)), model="mirt", dims=2, seed=0)
