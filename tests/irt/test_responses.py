from __future__ import annotations

import numpy as np
import pytest

from irt import IRTError, ResponseMatrix, binarize_mean_preserving


def test_binarisation_keeps_each_models_mean() -> None:
    scores = np.array([[0.9, 0.2, 0.6, 0.3], [0.1, 0.1, 0.3, 0.0], [1.0, 1.0, 0.0, 0.0]])
    binary = binarize_mean_preserving(scores)
    assert set(np.unique(binary)) <= {0.0, 1.0}
    # row 0: mean 0.5 → the two highest (0.9, 0.6) become 1
    np.testing.assert_array_equal(binary[0], [1, 0, 1, 0])
    # row 1: sum 0.5 rounds half up → one correct item, the highest score (0.3)
    np.testing.assert_array_equal(binary[1], [0, 0, 1, 0])
    np.testing.assert_array_equal(binary[2], scores[2])
    assert np.all(np.abs(binary.mean(1) - scores.mean(1)) <= 0.5 / 4 + 1e-12)


def test_binarisation_leaves_missing_entries_missing() -> None:
    scores = np.array([[0.8, np.nan, 0.4, 0.1]])
    binary = binarize_mean_preserving(scores)
    assert np.isnan(binary[0, 1])
    np.testing.assert_array_equal(binary[0, [0, 2, 3]], [1, 0, 0])


def test_matrix_checks_shapes_ranges_and_duplicates() -> None:
    with pytest.raises(IRTError, match="Duplicate model"):
        ResponseMatrix(np.zeros((2, 1)), ["a", "a"], ["i"], [""])
    with pytest.raises(IRTError, match=r"\[0, 1\]"):
        ResponseMatrix(np.full((1, 1), 2.0), ["a"], ["i"], [""])
    with pytest.raises(IRTError, match="does not match"):
        ResponseMatrix(np.zeros((2, 2)), ["a"], ["i", "j"], ["", ""])


def test_accuracy_ignores_missing_and_alignment_adds_missing() -> None:
    m = ResponseMatrix(np.array([[1.0, np.nan, 0.0], [1.0, 1.0, 1.0]]), ["a", "b"],
                       ["t/1", "t/2", "t/3"], ["t", "t", "t"])
    np.testing.assert_allclose(m.accuracies(), [0.5, 1.0])
    aligned = m.aligned_to(["t/3", "u/9", "t/1"])
    np.testing.assert_array_equal(aligned.scores[1], [1.0, np.nan, 1.0])
    assert aligned.item_tasks == ("t", "u", "t")
    both = ResponseMatrix.concat_models([m.select_models([0]), aligned.select_models([1])
                                         .aligned_to(["u/9"])])
    assert both.item_ids == ("t/1", "t/2", "t/3", "u/9")
    assert np.isnan(both.scores[1, :3]).all()
