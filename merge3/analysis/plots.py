"""PNG figures of the diagnostics.

Each figure is a ``matplotlib.figure.Figure`` drawn without pyplot, so no display is
needed and the caller's backend is left alone (a notebook keeps its inline plots): the
functions write the PNG and return its path; show it with ``IPython.display.Image``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from merge3.analysis.spectra import LayerSpectrum

__all__ = ["plot_spectra", "plot_effective_rank", "plot_interference", "plot_epoch_shares",
           "plot_objective"]


def _figure(figsize: tuple[float, float]):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_spectra(spectra: Mapping[str, Mapping[str, LayerSpectrum]], layer: str,
                 path: str | Path) -> Path:
    """Normalised singular values of one layer, one line per task (log scale)."""
    fig, ax = _figure((5, 3.5))
    for task, layers in spectra.items():
        s = layers[layer].singular_values
        ax.semilogy(np.arange(1, len(s) + 1), s / s[0], label=task)
    ax.set(xlabel="index", ylabel="σ_k / σ_1", title=f"singular spectrum: {layer}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_effective_rank(spectra: Mapping[str, Mapping[str, LayerSpectrum]],
                        path: str | Path) -> Path:
    """Effective rank per layer (x) for every task (one line each)."""
    fig, ax = _figure((6, 3.5))
    for task, layers in spectra.items():
        names = list(layers)
        ax.plot(range(len(names)), [layers[n].effective_rank for n in names], "o-", label=task)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=6)
    ax.set(ylabel="effective rank", title="task-vector effective rank per layer")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_interference(matrix: np.ndarray, labels: Sequence[str], path: str | Path,
                      title: str = "singular task interference") -> Path:
    """Heat map of a T × T pairwise STI matrix."""
    fig, ax = _figure((4.5, 4))
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return _save(fig, path)


def plot_epoch_shares(shares: Sequence[float], path: str | Path) -> Path:
    """Bar chart of each epoch's share of the task vector."""
    fig, ax = _figure((5, 3))
    ax.bar(range(1, len(shares) + 1), shares)
    ax.set(xlabel="epoch", ylabel="share of τ", title="task vector by epoch")
    return _save(fig, path)


def plot_objective(objectives: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Objective per iteration of one or more alignment runs (e.g. C²M³ Frank-Wolfe)."""
    fig, ax = _figure((5, 3.5))
    for label, values in objectives.items():
        ax.plot(range(len(values)), values, label=label)
    ax.set(xlabel="iteration", ylabel="objective", title="alignment objective")
    ax.legend(fontsize=7)
    return _save(fig, path)
