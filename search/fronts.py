"""A generation's front as the search run's artifacts and metrics (``fronts/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.pareto import front_table, hypervolume, plot_front
from search.records import TrialRecord, front_of
from search.tracking import Tracker

__all__ = ["log_front"]


def log_front(records: list[TrialRecord], objectives: list[str], tracker: Tracker,
              run_dir: Path, generation: int) -> None:
    """``fronts/front_genNNN.md`` and ``.png`` of every complete candidate so far, with
    the front's size, hypervolume and best mean estimate as metrics at step
    ``generation``; nothing while no candidate is complete."""
    front = front_of(records, objectives)
    if not front:
        return
    done = [r for r in records if r.complete]
    values = np.array([[r.estimates[t] for t in objectives] for r in done])
    out = run_dir / "fronts"
    out.mkdir(exist_ok=True)
    table = out / f"front_gen{generation:03d}.md"
    table.write_text(front_table(front, objectives) + "\n")
    png = plot_front(values, objectives, out / f"front_gen{generation:03d}.png",
                     title=f"generation {generation}: {len(done)} candidates")
    tracker.log_artifact(table, "fronts")
    tracker.log_artifact(png, "fronts")
    tracker.log_metrics({"front_size": len(front), "hypervolume": hypervolume(values),
                         "best_mean_estimate": max(r.mean_estimate or 0.0 for r in front),
                         "candidates": len(done)}, step=generation)
