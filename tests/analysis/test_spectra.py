"""Singular spectra and the Roy & Vetterli effective rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from merge3.analysis import effective_rank, layer_spectra, singular_spectrum, task_vector


def test_effective_rank_known_values() -> None:
    assert effective_rank(np.ones(7)) == pytest.approx(7.0, abs=1e-12)
    assert effective_rank(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0, abs=1e-12)
    # two equal values and a zero: exactly 2
    assert effective_rank(singular_spectrum(np.diag([2.0, 2.0, 0.0]))) == pytest.approx(2.0)
    # p = (0.75, 0.25): exp(H) with H = −0.75 ln 0.75 − 0.25 ln 0.25
    expected = np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))
    assert effective_rank(np.array([3.0, 1.0])) == pytest.approx(expected, rel=1e-12)
    assert effective_rank(np.zeros(4)) == 0.0


def test_layer_spectra_of_a_low_rank_task_vector() -> None:
    rng = np.random.default_rng(0)
    base = {"w": torch.tensor(rng.normal(size=(20, 12))), "b": torch.zeros(20),
            "steps": torch.tensor(3)}
    low_rank = rng.normal(size=(20, 2)) @ rng.normal(size=(2, 12))
    tuned = {"w": base["w"] + torch.tensor(low_rank), "b": torch.ones(20),
             "steps": torch.tensor(5)}
    tau = task_vector(tuned, base)
    assert set(tau) == {"w", "b"}  # integer buffers are not task-vector entries
    spectra = layer_spectra(tau)
    assert set(spectra) == {"w"}  # 1-D tensors have no spectrum
    s = spectra["w"].singular_values
    assert s.shape == (12,) and np.all(np.diff(s) <= 0)
    assert s[2] < 1e-10 * s[0]
    assert 1.0 < spectra["w"].effective_rank <= 2.0 + 1e-9
    assert spectra["w"].energy_rank <= 2
