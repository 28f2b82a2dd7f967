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
    (search/climb.py), and whether the search climbed: one row per task, so it fits any
    terminal."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="did the search climb? the best-mean members, scored on every test "
                        "item", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("")
    for column in ("gen 0's best", "final best", "difference"):
        table.add_column(column, justify="right")
    first, final = climb.first, climb.final
    table.add_row("trial (generation)", f"{first.number} ({first.generation})",
                  f"{final.number} ({final.generation})", "")
    table.add_row("estimated mean %", f"{100 * (first.mean_estimate or 0.0):.1f}",
                  f"{100 * (final.mean_estimate or 0.0):.1f}",
                  f"{100 * ((final.mean_estimate or 0.0) - (first.mean_estimate or 0.0)):+.1f}")
    for task in objectives:
        a, b = climb.first_accuracy[task], climb.final_accuracy[task]
        table.add_row(f"  {task} %", f"{100 * a:.1f}", f"{100 * b:.1f}", f"{100 * (b - a):+.1f}")
    low, high = climb.interval()
    table.add_row("[bold]true mean %[/bold]", f"[bold]{100 * climb.first_mean:.1f}",
                  f"[bold]{100 * climb.final_mean:.1f}",
                  f"[bold]{100 * (climb.final_mean - climb.first_mean):+.1f}[/bold] "
                  f"[{100 * low:+.1f}, {100 * high:+.1f}]")
    first_norm = climb.normalised_mean(climb.first_accuracy)
    final_norm = climb.normalised_mean(climb.final_accuracy)
    table.add_row("normalised mean %", f"{100 * first_norm:.1f}", f"{100 * final_norm:.1f}",
                  f"{100 * (final_norm - first_norm):+.1f}")
    console.print(table)
    console.print("[dim]difference: final − generation 0, with a 95% paired bootstrap "
                  "interval over the test items; normalised: each task / its expert's "
                  "accuracy[/dim]")
    gain = 100 * (climb.final_mean - climb.first_mean)
    if final.number == first.number:
        console.print("[red]It did not climb: generation 0's best is still the best "
                      "estimated member.[/red]")
    elif climb.climbed:
        console.print(f"[green]It climbed: the final best, from generation "
                      f"{final.generation}, is {gain:+.1f} pp truly above generation 0's "
                      f"best.[/green]")
    else:
        console.print(f"[red]It did not climb: the final best, from generation "
                      f"{final.generation}, is {gain:+.1f} pp against generation 0's best "
                      f"in truth.[/red]")


def task_labels(objectives: list[str], width: int) -> tuple[list[str], bool]:
    """Column labels for per-task tables: the task names when a ``width``-column terminal
    fits them (True), else T1, T2, ... (False; print :func:`task_legend` below)."""
    if sum(max(len(t), 8) + 3 for t in objectives) + 32 <= width:
        return list(objectives), True
    return [f"T{i}" for i in range(1, len(objectives) + 1)], False


def task_legend(labels: list[str], objectives: list[str]) -> str:
    return "  " + "; ".join(f"{label} {name}" for label, name in zip(labels, objectives))
