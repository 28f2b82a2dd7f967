"""Singular Task Interference: zero for orthogonal tasks, positive when they overlap."""

from __future__ import annotations

import numpy as np
import pytest

from merge3.analysis import (
    layer_interference,
    pairwise_interference,
    singular_task_interference,
    truncated_factors,
)


def _orthonormal(rng, n, k):
    return np.linalg.qr(rng.normal(size=(n, k)))[0]


def test_sti_definition_on_a_small_example() -> None:
    U = np.array([[1.0, 1.0], [0.0, 0.0]])  # two copies of e1: UᵀU − I = [[0, 1], [1, 0]]
    V = np.array([[1.0, 0.0], [0.0, 1.0]])  # orthonormal: VᵀV − I = 0
    assert singular_task_interference(U, np.array([2.0, 3.0]), V) == 0.0
    V2 = U.copy()
    # [[0,1],[1,0]] diag(2,3) [[0,1],[1,0]] = diag(3, 2): L1 norm 5
    assert singular_task_interference(U, np.array([2.0, 3.0]), V2) == pytest.approx(5.0)


def test_orthogonal_tasks_do_not_interfere() -> None:
    rng = np.random.default_rng(0)
    U = _orthonormal(rng, 30, 6)
    V = _orthonormal(rng, 20, 6)
    task_a = {"w": U[:, :3] @ np.diag([3.0, 2.0, 1.0]) @ V[:, :3].T}
    task_b = {"w": U[:, 3:] @ np.diag([5.0, 4.0, 0.5]) @ V[:, 3:].T}
    overlapping = {"w": task_a["w"] + 0.5 * rng.normal(size=(30, 20))}
    assert layer_interference([task_a, task_b], k=3)["w"] < 1e-10
    assert layer_interference([task_a, overlapping], k=3)["w"] > 1.0
    matrix = pairwise_interference([task_a, task_b, overlapping], "w", k=3)
    assert matrix.shape == (3, 3) and np.allclose(matrix, matrix.T)
    assert matrix[0, 1] < 1e-10 < matrix[0, 2]
    assert np.all(np.diag(matrix) == 0)


def test_truncated_factors_reconstruct() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(8, 2)) @ rng.normal(size=(2, 5))
    U, s, V = truncated_factors(matrix, 2)
    assert U.shape == (8, 2) and s.shape == (2,) and V.shape == (5, 2)
    np.testing.assert_allclose(U @ np.diag(s) @ V.T, matrix, atol=1e-12)


def test_tsv_m_orthogonalisation_removes_the_interference() -> None:
    import torch

    from merge3.analysis.interference import _concatenated
    from merge3.methods.tsv import tsv_merge_matrix

    rng = np.random.default_rng(2)
    shared = rng.normal(size=(24, 16))
    tasks = [{"w": shared + 0.3 * rng.normal(size=(24, 16))} for _ in range(3)]
    before = layer_interference(tasks, k=4)["w"]
    after = layer_interference(tasks, k=4, orthogonalized=True)["w"]
    assert before > 1.0 and after < 1e-9 * before
    # the orthogonalised factors are the ones TSV-M sums
    U, s, V = _concatenated([t["w"] for t in tasks], 4, orthogonalized=True)
    merged = tsv_merge_matrix([torch.from_numpy(t["w"]) for t in tasks], 4)
    np.testing.assert_allclose(U @ np.diag(s) @ V.T, merged.numpy(), atol=1e-10)
