"""The diagnostics' figures are written as PNG files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from merge3.analysis import layer_spectra
from merge3.analysis.plots import (
    plot_effective_rank,
    plot_epoch_shares,
    plot_interference,
    plot_objective,
    plot_spectra,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_are_pngs(tmp_path) -> None:
    rng = np.random.default_rng(0)
    spectra = {f"task{t}": layer_spectra({"a": rng.normal(size=(6, 4)),
                                          "b": rng.normal(size=(5, 5))}) for t in range(2)}
    paths = [
        plot_spectra(spectra, "a", tmp_path / "spectra.png"),
        plot_effective_rank(spectra, tmp_path / "erank.png"),
        plot_interference(np.array([[0.0, 1.0], [1.0, 0.0]]), ["x", "y"], tmp_path / "sti.png"),
        plot_epoch_shares([0.7, 0.2, 0.1], tmp_path / "shares.png"),
        plot_objective({"c2m3": [1.0, 2.0, 2.5]}, tmp_path / "sub" / "objective.png"),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000


def test_plots_leave_the_callers_backend_alone(tmp_path) -> None:
    # a fresh interpreter: importing and using the module must not switch the backend
    # (it used to force Agg on import, which silenced a notebook's inline plots)
    code = ("import matplotlib; matplotlib.use('pdf'); "
            "from merge3.analysis.plots import plot_epoch_shares; "
            f"plot_epoch_shares([0.5, 0.5], {str(tmp_path / 'shares.png')!r}); "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().lower() == "pdf"
    assert (tmp_path / "shares.png").read_bytes()[:8] == PNG_MAGIC
