"""Pareto fronts, hypervolume and their pictures (all objectives maximised)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from search.records import TrialRecord

__all__ = ["pareto_mask", "hypervolume", "plot_front", "front_table", "close_call"]


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """True for rows of ``values`` (n × m) that no other row dominates."""
    values = np.asarray(values, dtype=float)
    keep = np.ones(len(values), dtype=bool)
    for i, row in enumerate(values):
        dominated = np.all(values >= row, axis=1) & np.any(values > row, axis=1)
        keep[i] = not dominated.any()
    return keep


def close_call(values: Sequence[float], stderr: Sequence[float], front: np.ndarray,
               margin: float = 1.0) -> bool:
    """Whether a candidate is a close call against ``front`` (n × m estimates).

    It is when some front member dominates its estimates, but none dominates its
    optimistic point (estimates + ``margin`` standard errors): within its error of the
    front, so a few more items could put it there. A candidate nothing dominates is on
    the front already and is not a close call.
    """
    front = np.asarray(front, dtype=float).reshape(-1, len(values))
    if front.size == 0:
        return False
    point = np.asarray(values, dtype=float)
    optimistic = point + margin * np.asarray(stderr, dtype=float)

    def dominated(row: np.ndarray) -> bool:
        return bool(np.any(np.all(front >= row, axis=1) & np.any(front > row, axis=1)))

    return dominated(point) and not dominated(optimistic)


def hypervolume(values: np.ndarray, reference: Sequence[float] | None = None) -> float:
    """Volume dominated by ``values`` (n × m) above ``reference`` (default: the origin).

    Exact, by slicing (HSO, While et al. 2006): sorted by the last objective, each slab
    between two consecutive levels contributes its height times the (m−1)-dimensional
    volume of the points above it. O(n^m): fronts of a search are small.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return 0.0
    ref = np.zeros(values.shape[1]) if reference is None else np.asarray(reference, float)
    return _slices(np.maximum(values - ref, 0.0))


def _slices(points: np.ndarray) -> float:
    if points.shape[1] == 1:
        return float(points[:, 0].max())
    points = points[np.argsort(-points[:, -1], kind="stable")]
    levels = np.append(points[1:, -1], 0.0)
    return float(sum((points[i, -1] - levels[i]) * _slices(points[: i + 1, :-1])
                     for i in range(len(points)) if points[i, -1] > levels[i]))


def front_table(rows: Sequence[TrialRecord], objectives: list[str]) -> str:
    """A markdown table of front members: trial, generation, estimate ± s.e., mean."""
    head = "| trial | generation | " + " | ".join(objectives) + " | mean |"
    lines = [head, "|" + "---|" * (len(objectives) + 3)]
    for row in rows:
        cells = [f"{row.estimates[t]:.3f} ± {row.stderr.get(t, 0):.3f}" for t in objectives]
        mean = np.mean([row.estimates[t] for t in objectives])
        generation = "" if row.generation is None else row.generation
        lines.append(f"| {row.number} | {generation} | " + " | ".join(cells)
                     + f" | {mean:.3f} |")
    return "\n".join(lines)


def plot_front(values: np.ndarray, objectives: list[str], path: Path, *,
               title: str = "", highlight: np.ndarray | None = None,
               references: dict[str, Sequence[float]] | None = None) -> Path:
    """Scatter of candidates (first two objectives, or mean vs each for > 2) with the front."""
    # a Figure without pyplot: no backend switch in the caller's process (a notebook keeps
    # its inline plots)
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=float)
    mask = pareto_mask(values) if highlight is None else highlight
    fig = Figure(figsize=(5.5, 4.5), dpi=110)
    ax = fig.subplots()
    if values.shape[1] >= 2:
        x, y, xl, yl = values[:, 0], values[:, 1], objectives[0], objectives[1]
    else:
        x, y, xl, yl = np.arange(len(values)), values[:, 0], "candidate", objectives[0]
    ax.scatter(x, y, s=14, c="#bbbbbb", label="candidates")
    order = np.argsort(x[mask])
    ax.plot(x[mask][order], y[mask][order], "o-", c="#d62728", ms=5, label="Pareto front")
    for name, point in (references or {}).items():
        ax.scatter([point[0]], [point[1] if len(point) > 1 else 0], marker="*", s=90,
                   label=name)
    ax.set_xlabel(f"{xl} (estimated accuracy)")
    ax.set_ylabel(f"{yl} (estimated accuracy)")
    ax.set_title(title or "candidates and front")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
