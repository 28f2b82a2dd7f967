"""Checks a search runs before its first candidate, so bad input fails in seconds, not
after a generation of failed (or silently wrong) candidates.

- models: no expert listed twice, the base not among the experts, every expert of the
  base's architecture with the base's tensor names and shapes, every tensor finite;
- item banks: every bank item exists in its task (a bank calibrated on another task
  would make every candidate fail), and the requested anchors fit in the bank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from merge3.checkpoints import Checkpoint
from merge3.errors import RecipeError
from merge3.executor import check_finite
from merge3.merging import check_compatible
from search.fitness import strip_task

__all__ = ["check_models", "check_banks"]


def check_models(base: str | None, experts: Mapping[str, str], *,
                 finite: bool = True) -> None:
    """Refuse duplicate experts, the base among them, incompatible or non-finite experts.

    ``base``/``experts`` are resolved model directories. Reads every tensor once when
    ``finite`` (a stream: one tensor in memory at a time).
    """
    seen: dict[Path, str] = {}
    base_path = Path(base).resolve() if base else None
    for name, directory in experts.items():
        path = Path(directory).resolve()
        if path == base_path:
            raise RecipeError(f"experts.{name} is the base model ({directory}).",
                              fix="list only fine-tuned experts under `experts`; the base "
                                  "goes under `base_model`.")
        if path in seen:
            raise RecipeError(f"experts.{name} and experts.{seen[path]} are the same model "
                              f"({directory}).",
                              fix="list each expert once.")
        seen[path] = name
    checkpoints = [Checkpoint(d) for d in experts.values()]
    reference = Checkpoint(base) if base else checkpoints[0]
    check_compatible(reference, [c for c in checkpoints if c is not reference])
    if not finite:
        return
    for checkpoint in ([reference] if base else []) + checkpoints:
        for name in checkpoint.names():
            tensor = checkpoint.get(name)
            if tensor.is_floating_point():
                check_finite(tensor.float(), name, str(checkpoint.path))


def check_banks(banks: Mapping[str, object], task_items: Mapping[str, Sequence[str]],
                anchors: int, bank_dirs: Mapping[str, str] | None = None) -> None:
    """Every bank item is an item of its task, and ``anchors`` ≤ the bank's items.

    ``banks``: task -> ``irt.ItemBank``; ``task_items``: task -> the task's item ids.
    """
    for task, bank in banks.items():
        where = f" ({bank_dirs[task]})" if bank_dirs and task in bank_dirs else ""
        have = set(task_items[task])
        ids = [strip_task(task, i) for i in bank.item_ids]  # type: ignore[attr-defined]
        missing = [i for i in ids if i not in have]
        if missing:
            raise RecipeError(
                f"The item bank of task {task!r}{where} holds {len(missing)} of its "
                f"{len(ids)} items that task {task!r} does not have (first: {missing[0]!r}); "
                "it was calibrated on another task or another version of it.",
                fix=f"calibrate a bank from {task!r}'s own responses (merge3 irt calibrate) "
                    "or point fitness.item_bank at the right folder.")
        usable = int(bank.selectable.size)  # type: ignore[attr-defined]
        if anchors > usable:
            flagged = len(ids) - usable
            raise RecipeError(
                f"fitness.anchors is {anchors}, but the item bank of task {task!r}{where} "
                f"has only {usable} items to select"
                + (f" ({len(ids)} items, {flagged} flagged for non-positive or near-zero "
                   "discrimination)." if flagged else "."),
                fix=f"ask for at most {usable} anchors, or use estimator: full.")
