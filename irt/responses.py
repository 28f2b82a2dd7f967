"""Response matrices: models × items scores in [0, 1], NaN where a model did not answer.

The object every other ``irt`` module consumes (tinyBenchmarks, Polo et al. 2024, §3;
metabench, Kipnis et al. 2024). Shapes: ``scores`` is (M models, N items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from irt.errors import IRTError

__all__ = ["ResponseMatrix", "binarize_mean_preserving", "item_key"]


def item_key(task: str, item: str) -> str:
    """Stable item id shared by every loader: ``task/item`` (``item`` alone without a task)."""
    item = str(item)
    if not task or item.startswith(f"{task}/"):
        return item
    return f"{task}/{item}"


def binarize_mean_preserving(scores: np.ndarray) -> np.ndarray:
    """Binarise each row with the threshold that keeps the row's mean (tinyBenchmarks §3).

    Per model, the ``round(mean · n)`` highest scores become 1 and the rest 0 (ties broken
    by item order), so the binarised accuracy equals the original mean up to 1/(2n).
    Missing entries (NaN) stay missing. Shape (M, N) in, (M, N) out.
    """
    scores = np.asarray(scores, dtype=float)
    out = np.full_like(scores, np.nan)
    for row in range(scores.shape[0]):
        observed = np.flatnonzero(~np.isnan(scores[row]))
        if observed.size == 0:
            continue
        values = scores[row, observed]
        n_correct = int(np.floor(values.sum() + 0.5))
        order = np.argsort(-values, kind="stable")
        binary = np.zeros(observed.size)
        binary[order[:n_correct]] = 1.0
        out[row, observed] = binary
    return out


@dataclass(frozen=True, slots=True)
class ResponseMatrix:
    """Scores of M models on N items, with item tasks and free-form model metadata.

    ``scores[m, i]`` ∈ [0, 1] or NaN (missing). ``item_tasks[i]`` is the task of item i
    (empty string when unknown).
    """

    scores: np.ndarray
    model_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    item_tasks: tuple[str, ...]
    model_metadata: dict[str, dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=float)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "model_ids", tuple(str(m) for m in self.model_ids))
        object.__setattr__(self, "item_ids", tuple(str(i) for i in self.item_ids))
        object.__setattr__(self, "item_tasks", tuple(str(t) for t in self.item_tasks))
        if scores.ndim != 2 or scores.shape != (len(self.model_ids), len(self.item_ids)):
            raise IRTError(
                f"Response matrix of shape {scores.shape} does not match "
                f"{len(self.model_ids)} models × {len(self.item_ids)} items.",
                fix="build it with one row per model id and one column per item id.",
            )
        if len(self.item_tasks) != len(self.item_ids):
            raise IRTError("item_tasks must have one entry per item.", fix="pass '' if unknown.")
        for name, ids in (("model", self.model_ids), ("item", self.item_ids)):
            if len(set(ids)) != len(ids):
                dup = next(x for x in ids if ids.count(x) > 1)
                raise IRTError(f"Duplicate {name} id {dup!r} in the response matrix.",
                               fix=f"give every {name} a unique id.")
        finite = scores[~np.isnan(scores)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise IRTError("Scores must lie in [0, 1].", fix="rescale the metric to [0, 1].")

    # ------------------------------------------------------------------ shape helpers
    @property
    def n_models(self) -> int:
        return len(self.model_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def observed(self) -> np.ndarray:
        """Boolean (M, N) mask of answered entries."""
        return ~np.isnan(self.scores)

    @property
    def is_binary(self) -> bool:
        finite = self.scores[self.observed]
        return bool(np.all((finite == 0) | (finite == 1)))

    def accuracies(self) -> np.ndarray:
        """Mean score of each model over the items it answered, shape (M,)."""
        counts = self.observed.sum(axis=1)
        sums = np.nansum(self.scores, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def tasks(self) -> list[str]:
        """Distinct task names in item order of first appearance."""
        return list(dict.fromkeys(self.item_tasks))

    # ------------------------------------------------------------------ transforms
    def binarized(self) -> ResponseMatrix:
        """Binary copy, mean-preserving per model (a no-op on binary matrices)."""
        if self.is_binary:
            return self
        return ResponseMatrix(binarize_mean_preserving(self.scores), self.model_ids,
                              self.item_ids, self.item_tasks, dict(self.model_metadata))

    def model_index(self, names: Sequence[str]) -> np.ndarray:
        lookup = {m: k for k, m in enumerate(self.model_ids)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise IRTError(f"Unknown model(s) {missing[:5]} in the response matrix.",
                           fix="check the model names against the loaded responses.")
        return np.array([lookup[n] for n in names], dtype=int)

    def item_index(self, names: Sequence[str]) -> np.ndarray:
        lookup = {m: k for k, m in enumerate(self.item_ids)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise IRTError(f"Unknown item(s) {missing[:5]} in the response matrix.",
                           fix="use item ids of the same benchmark (task/item).")
        return np.array([lookup[n] for n in names], dtype=int)

    def select_models(self, rows: Sequence[int] | np.ndarray) -> ResponseMatrix:
        rows = np.asarray(rows, dtype=int)
        ids = tuple(self.model_ids[r] for r in rows)
        meta = {m: self.model_metadata[m] for m in ids if m in self.model_metadata}
        return ResponseMatrix(self.scores[rows], ids, self.item_ids, self.item_tasks, meta)

    def select_items(self, cols: Sequence[int] | np.ndarray) -> ResponseMatrix:
        cols = np.asarray(cols, dtype=int)
        return ResponseMatrix(self.scores[:, cols], self.model_ids,
                              tuple(self.item_ids[c] for c in cols),
                              tuple(self.item_tasks[c] for c in cols), dict(self.model_metadata))

    def aligned_to(self, item_ids: Sequence[str]) -> ResponseMatrix:
        """Reorder columns to ``item_ids``; items this matrix lacks become missing (NaN)."""
        lookup = {m: k for k, m in enumerate(self.item_ids)}
        scores = np.full((self.n_models, len(item_ids)), np.nan)
        tasks = []
        for j, item in enumerate(item_ids):
            k = lookup.get(item)
            if k is not None:
                scores[:, j] = self.scores[:, k]
                tasks.append(self.item_tasks[k])
            else:
                tasks.append(item.split("/", 1)[0] if "/" in item else "")
        return ResponseMatrix(scores, self.model_ids, tuple(item_ids), tuple(tasks),
                              dict(self.model_metadata))

    @staticmethod
    def concat_models(parts: Sequence[ResponseMatrix]) -> ResponseMatrix:
        """Stack several matrices (distinct models) over the union of their items."""
        if not parts:
            raise IRTError("No response matrices to combine.", fix="pass at least one input.")
        items: dict[str, str] = {}
        for part in parts:
            for item, task in zip(part.item_ids, part.item_tasks):
                items.setdefault(item, task)
        item_ids = tuple(items)
        rows = [p.aligned_to(item_ids) for p in parts]
        meta: dict[str, dict[str, object]] = {}
        for p in parts:
            meta.update(p.model_metadata)
        return ResponseMatrix(np.vstack([r.scores for r in rows]),
                              tuple(m for r in rows for m in r.model_ids), item_ids,
                              tuple(items.values()), meta)
