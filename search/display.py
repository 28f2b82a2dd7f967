"""Terminal tables of a search's results (rich): the front, and per-task columns that fit."""

from __future__ import annotations

from collections.abc import Sequence

from search.records import TrialRecord

__all__ = ["print_front", "task_labels", "task_legend"]


def print_front(front: Sequence[TrialRecord], objectives: list[str]) -> None:
    """The front as a table that fits the terminal: accuracies in %, ± one s.e.

    With many objectives the columns are T1, T2, ... (a legend follows) and each cell
    puts its standard error on a second line.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    labels, wide = task_labels(objectives, console.width)
    table = Table(title="Pareto front: estimated accuracy % ± s.e., best mean first",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("trial", justify="right")
    table.add_column("gen", justify="right")
    for label in labels:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("mean", justify="right", style="bold")
    table.add_column("parents", justify="right", no_wrap=True)
    joiner = "±" if wide else "\n[dim]±"
    for row in sorted(front, key=lambda r: -(r.mean_estimate or 0.0)):
        table.add_row(str(row.number), "" if row.generation is None else str(row.generation),
                      *[f"{100 * row.estimates[t]:.1f}{joiner}"
                        f"{100 * row.stderr.get(t, 0):.1f}" + ("" if wide else "[/dim]")
                        for t in objectives],
                      f"{100 * (row.mean_estimate or 0.0):.1f}",
                      ",".join(map(str, row.parents)) or "-")
    console.print(table)
    if not wide:
        console.print(task_legend(labels, objectives), style="dim")


def task_labels(objectives: list[str], width: int) -> tuple[list[str], bool]:
    """Column labels for per-task tables: the task names when a ``width``-column terminal
    fits them (True), else T1, T2, ... (False; print :func:`task_legend` below)."""
    if sum(max(len(t), 8) + 3 for t in objectives) + 32 <= width:
        return list(objectives), True
    return [f"T{i}" for i in range(1, len(objectives) + 1)], False


def task_legend(labels: list[str], objectives: list[str]) -> str:
    return "  " + "; ".join(f"{label} {name}" for label, name in zip(labels, objectives))
