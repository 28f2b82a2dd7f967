"""Terminal tables of a search's results (rich): the front, and per-task columns that fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from search.records import TrialRecord

if TYPE_CHECKING:
    from search.climb import Climb

__all__ = ["print_front", "print_climb", "task_labels", "task_legend"]


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


def print_climb(climb: Climb, objectives: list[str]) -> None:
    """Generation 0's best-mean member against the final front's, on true accuracies
    (search/climb.py), and whether the search climbed."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    labels, wide = task_labels(objectives, console.width - 30)
    table = Table(title="did the search climb? true accuracy % (every test item) of the "
                        "best-mean members", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("member", "trial", "gen", "est. mean"):
        table.add_column(column, justify="left" if column == "member" else "right")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("true mean", justify="right", style="bold")
    table.add_column("normalised", justify="right")
    for name, record, accuracy in (("generation 0's best", climb.first, climb.first_accuracy),
                                   ("final front's best", climb.final, climb.final_accuracy)):
        table.add_row(name, str(record.number), str(record.generation),
                      f"{100 * (record.mean_estimate or 0.0):.1f}",
                      *[f"{100 * accuracy[t]:.1f}" for t in objectives],
                      f"{100 * sum(accuracy.values()) / len(accuracy):.1f}",
                      f"{100 * climb.normalised_mean(accuracy):.1f}")
    console.print(table)
    if not wide:
        console.print(task_legend(labels, objectives), style="dim")
    gain = 100 * (climb.final_mean - climb.first_mean)
    if climb.final.number == climb.first.number:
        verdict = "[red]it did not: generation 0's best is still the best estimated member[/red]"
    elif climb.climbed:
        verdict = (f"[green]it did: the final best (generation {climb.final.generation}) is "
                   f"{gain:+.1f} pp truly above generation 0's best[/green]")
    else:
        verdict = (f"[red]it did not: the final best (generation {climb.final.generation}) is "
                   f"{gain:+.1f} pp against generation 0's best in truth[/red]")
    console.print(verdict + " (normalised: each task / its expert's accuracy)")


def task_labels(objectives: list[str], width: int) -> tuple[list[str], bool]:
    """Column labels for per-task tables: the task names when a ``width``-column terminal
    fits them (True), else T1, T2, ... (False; print :func:`task_legend` below)."""
    if sum(max(len(t), 8) + 3 for t in objectives) + 32 <= width:
        return list(objectives), True
    return [f"T{i}" for i in range(1, len(objectives) + 1)], False


def task_legend(labels: list[str], objectives: list[str]) -> str:
    return "  " + "; ".join(f"{label} {name}" for label, name in zip(labels, objectives))
