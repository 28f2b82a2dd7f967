"""The ancestry of candidates: who descends from whom, as a dict and as a picture."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from search.records import TrialRecord

__all__ = ["ancestry", "plot_lineage"]


def ancestry(records: Mapping[int, TrialRecord], trials: Iterable[int]) -> dict[int, list[int]]:
    """trial -> its parents, for ``trials`` and every ancestor of theirs (``records``:
    trial number -> record; parents the records lack are named but not followed)."""
    out: dict[int, list[int]] = {}
    stack = list(trials)
    while stack:
        number = stack.pop()
        if number in out or number not in records:
            continue
        out[number] = list(records[number].parents)
        stack.extend(records[number].parents)
    return out


def plot_lineage(records: Iterable[TrialRecord], front: Iterable[TrialRecord],
                 out_dir: Path) -> tuple[Path, Path]:
    """``lineage.png`` (x: generation, arrows parent -> child, front members red) and
    ``lineage.json`` (trial -> parents) of the front's ancestry, in ``out_dir``."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    by_trial = {r.number: r for r in records}
    front_ids = {r.number for r in front}
    keep = ancestry(by_trial, front_ids)
    rows: dict[int, list[int]] = {}
    for trial in sorted(keep):
        rows.setdefault(by_trial[trial].generation or 0, []).append(trial)
    position = {t: (g, i) for g, members in rows.items() for i, t in enumerate(members)}
    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.subplots()
    for trial, (x, y) in position.items():
        for parent in keep[trial]:
            if parent in position:
                px, py = position[parent]
                ax.annotate("", (x, y), (px, py), arrowprops={"arrowstyle": "->", "lw": 0.6,
                                                               "color": "#888888"})
        ax.scatter([x], [y], s=60, c="#d62728" if trial in front_ids else "#1f77b4", zorder=3)
        ax.annotate(str(trial), (x, y), fontsize=7, ha="center", va="bottom",
                    xytext=(0, 5), textcoords="offset points")
    ax.set_xlabel("generation")
    ax.set_yticks([])
    ax.set_title("lineage of the Pareto front (red: front members)")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    png, table = out_dir / "lineage.png", out_dir / "lineage.json"
    fig.savefig(png)
    table.write_text(json.dumps({str(t): keep[t] for t in sorted(keep)}, indent=1))
    return png, table
