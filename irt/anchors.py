"""Anchor item selection: which few items a new model must answer, and their weights.

Methods of tinyBenchmarks (Polo et al. 2024, §3.1): random, stratified by task, k-means on
the population's correctness columns, k-means on IRT embeddings (α_i, β_i); plus maximum
Fisher information at the population's abilities (metabench, Kipnis et al. 2024). For the
clustering methods the anchor is the item nearest each centroid and its weight the
cluster's share of items. Deterministic for a given seed.

Items the bank flags (non-positive or near-zero discrimination, irt/flags.py) are never
chosen, by any selector, plug-ins included: the selector sees the bank without them, and
each flagged item's share of the weight goes to the anchor whose correctness column across
the bank's models is nearest its own, so the weights still stand for the whole bank.

:func:`union_anchors` joins a shared core and per-model adaptive top-up items
(irt/adaptive.py) into one anchor set the estimators read.

Each method is an :class:`AnchorSelector` in the :data:`SELECTORS` registry; a new one is
a class with ``select(bank, k, seed)`` plus one ``SELECTORS.register`` line
(docs/extending.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from irt.bank import ItemBank
from irt.errors import IRTError, UnknownIRTNameError
from merge3.registry import Registry

__all__ = ["AnchorSet", "AnchorSelector", "select_anchors", "SELECTORS", "DEFAULT_SELECTOR",
           "load_anchors", "extend_anchors", "union_anchors"]

# k-means on correctness: the best selector for every estimator at 50 anchors
# (benchmarks/irt/README.md).
DEFAULT_SELECTOR = "kmeans-correctness"
ANCHORS_FORMAT = "merge3-irt-anchors-v1"


@dataclass(frozen=True)
class AnchorSet:
    """k anchor items (indices into the bank and ids) with weights summing to 1.

    ``in_core`` (k,) bool, or None (every item): which items are the design sample the
    weights describe. The others are adaptive top-ups (:func:`union_anchors`), weight 0:
    chosen from a model's own answers, they are no sample of the bank and feed only the
    model-based parts of the estimators (irt/estimators.py).
    """

    indices: np.ndarray
    item_ids: tuple[str, ...]
    weights: np.ndarray
    method: str
    seed: int
    in_core: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.indices.size)

    @property
    def core_mask(self) -> np.ndarray:
        """(k,) True for the design sample's items (all of them unless a union)."""
        if self.in_core is None:
            return np.ones(self.k, dtype=bool)
        return np.asarray(self.in_core, dtype=bool)

    def to_json(self) -> dict[str, object]:
        items = [{"item": i, "index": int(x), "weight": float(w)}
                 for i, x, w in zip(self.item_ids, self.indices, self.weights)]
        if self.in_core is not None:  # a union: mark the top-ups
            for entry, core in zip(items, self.core_mask):
                entry["core"] = bool(core)
        return {"format": ANCHORS_FORMAT, "method": self.method, "seed": self.seed,
                "k": self.k, "items": items}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")


@runtime_checkable
class AnchorSelector(Protocol):
    """Chooses k distinct items of a bank: (indices (k,), weights (k,) summing to 1)."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]: ...


SELECTORS: Registry[AnchorSelector] = Registry(
    "anchor selector", lambda e: not isinstance(e, type) and isinstance(e, AnchorSelector),
    default=DEFAULT_SELECTOR, error=UnknownIRTNameError,
    expects="AnchorSelector instance (select(bank, k, seed) -> (indices, weights))")


def load_anchors(path: str | Path, bank: ItemBank) -> AnchorSet:
    """Read an anchors.json and check its items against ``bank``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise IRTError(f"{path}: cannot be read ({err.strerror}).",
                       fix="create it with `merge3 irt anchors BANK --out FILE`.") from None
    except json.JSONDecodeError as err:
        raise IRTError(f"{path}, line {err.lineno}: invalid JSON ({err.msg}).",
                       fix="recreate it with `merge3 irt anchors`.") from None
    if data.get("format") != ANCHORS_FORMAT:
        raise IRTError(f"{path}: format {data.get('format')!r}, expected {ANCHORS_FORMAT!r}.",
                       fix="recreate it with `merge3 irt anchors`.")
    lookup = {item: k for k, item in enumerate(bank.item_ids)}
    missing = [e["item"] for e in data["items"] if e["item"] not in lookup]
    if missing:
        raise IRTError(f"{path}: anchor items {missing[:3]} are not in the bank.",
                       fix="select anchors from this bank.")
    ids = tuple(e["item"] for e in data["items"])
    in_core = None
    if any("core" in e for e in data["items"]):
        in_core = np.array([bool(e.get("core", True)) for e in data["items"]])
    return AnchorSet(np.array([lookup[i] for i in ids], dtype=int), ids,
                     np.array([e["weight"] for e in data["items"]], dtype=float),
                     str(data["method"]), int(data["seed"]), in_core)


def _nearest_assignment(features: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Weights = share of all items whose nearest chosen item is each anchor."""
    centers = features[chosen]
    d2 = ((features[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    labels = d2.argmin(axis=1)
    return np.bincount(labels, minlength=chosen.size) / features.shape[0]


def _kmeans_anchors(features: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=5, random_state=seed).fit(features)
    chosen = np.empty(k, dtype=int)
    taken: set[int] = set()
    for c in range(k):
        d2 = ((features - km.cluster_centers_[c]) ** 2).sum(1)
        for idx in np.argsort(d2, kind="stable"):
            if int(idx) not in taken:  # duplicate items can share a centroid
                chosen[c] = idx
                taken.add(int(idx))
                break
    weights = np.bincount(km.labels_, minlength=k) / features.shape[0]
    return chosen, weights


def _stratified(bank: ItemBank, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    tasks = np.array(bank.item_tasks)
    names, counts = np.unique(tasks, return_counts=True)
    share = counts / counts.sum()
    alloc = np.floor(share * k).astype(int)
    if k >= names.size:
        alloc = np.maximum(alloc, 1)
    while alloc.sum() > k:
        alloc[np.argmax(alloc)] -= 1
    remainder = share * k - alloc
    while alloc.sum() < k:
        open_tasks = np.flatnonzero(alloc < counts)
        best = open_tasks[np.argmax(remainder[open_tasks])]
        alloc[best] += 1
        remainder[best] -= 1
    chosen, weights = [], []
    for name, n_task, n_pick, s in zip(names, counts, alloc, share):
        if n_pick == 0:
            continue
        members = np.flatnonzero(tasks == name)
        picks = rng.choice(members, size=min(n_pick, n_task), replace=False)
        chosen.extend(picks.tolist())
        weights.extend([s / picks.size] * picks.size)
    weights_arr = np.array(weights)
    return np.array(chosen, dtype=int), weights_arr / weights_arr.sum()


def _fisher(bank: ItemBank, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cover the population's ability range: split models into k groups by accuracy, and
    for each group take the unused item of largest Fisher information at the group's mean θ."""
    accuracy = np.nanmean(bank.responses, axis=1)
    order = np.argsort(accuracy, kind="stable")
    groups = np.array_split(order, k)
    info = bank.params.fisher_information(
        np.stack([bank.theta[g].mean(axis=0) if g.size else bank.theta.mean(axis=0)
                  for g in groups]))
    chosen: list[int] = []
    used = np.zeros(bank.n_items, dtype=bool)
    for row in info:
        row = np.where(used, -np.inf, row)
        best = int(np.argmax(row))
        chosen.append(best)
        used[best] = True
    chosen_arr = np.array(chosen, dtype=int)
    embedding = np.column_stack([bank.params.alpha, bank.params.beta])
    return chosen_arr, _nearest_assignment(embedding, chosen_arr)


class RandomAnchors:
    """k items uniformly at random, equal weights."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(bank.n_items, size=k, replace=False)), np.full(k, 1.0 / k)


class StratifiedAnchors:
    """Random items per task, in proportion to the tasks' shares of the bank."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return _stratified(bank, k, np.random.default_rng(seed))


class KMeansCorrectness:
    """k-means on each item's correctness across the bank's models (tinyBenchmarks)."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        columns = bank.responses.T  # (N, M): each item's correctness across models
        fill = np.nanmean(columns, axis=1, keepdims=True)
        return _kmeans_anchors(np.where(np.isnan(columns), fill, columns), k, seed)


class KMeansIRT:
    """k-means on the items' IRT embeddings (α_i, β_i) (tinyBenchmarks)."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        embedding = np.column_stack([bank.params.alpha, bank.params.beta])
        return _kmeans_anchors(embedding, k, seed)


class FisherAnchors:
    """Maximum Fisher information across the population's ability range (metabench)."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return _fisher(bank, k)


SELECTORS.register("random", RandomAnchors())
SELECTORS.register("stratified", StratifiedAnchors())
SELECTORS.register("kmeans-correctness", KMeansCorrectness())
SELECTORS.register("kmeans-irt", KMeansIRT())
SELECTORS.register("fisher", FisherAnchors())


def _filled_columns(bank: ItemBank) -> np.ndarray:
    """(N, M) each item's correctness across the bank's models, NaN = the item's mean."""
    columns = bank.responses.T
    fill = np.nan_to_num(np.nanmean(columns, axis=1, keepdims=True), nan=0.5)
    return np.where(np.isnan(columns), fill, columns)


def _cover_flagged(bank: ItemBank, chosen: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weights over the whole bank: the unflagged share of ``weights`` plus each flagged
    item's 1/N on the anchor nearest it in correctness (module docstring)."""
    flagged = bank.flags.indices
    columns = _filled_columns(bank)
    d2 = ((columns[flagged][:, None, :] - columns[chosen][None, :, :]) ** 2).sum(-1)
    nearest = np.bincount(d2.argmin(axis=1), minlength=chosen.size)
    kept = bank.n_items - flagged.size
    return (weights * kept + nearest) / bank.n_items


def select_anchors(bank: ItemBank, k: int, method: str = DEFAULT_SELECTOR, seed: int = 0,
                   *, exclude_flagged: bool = True) -> AnchorSet:
    """Choose k anchor items of ``bank`` by ``method`` (a name in SELECTORS), never a
    flagged item (``bank.flagged``) unless ``exclude_flagged`` is False (for ablations:
    what leaving them out changes)."""
    selector = SELECTORS.get(method)
    if not 1 <= k <= bank.n_items:
        raise IRTError(f"k = {k} anchors asked from a bank of {bank.n_items} items.",
                       fix=f"choose 1 ≤ k ≤ {bank.n_items}.")
    selectable = bank.selectable if exclude_flagged else np.arange(bank.n_items)
    if k > selectable.size:
        raise IRTError(f"k = {k} anchors asked, but only {selectable.size} of the bank's "
                       f"{bank.n_items} items are unflagged ({bank.flags.count} have "
                       "non-positive or near-zero discrimination).",
                       fix=f"choose k ≤ {selectable.size}, or calibrate on more models.")
    pool = bank if selectable.size == bank.n_items else bank.select_items(selectable)
    chosen, weights = selector.select(pool, k, seed)
    chosen = np.asarray(chosen, dtype=int)
    weights = np.asarray(weights, dtype=float)
    if (chosen.shape != (k,) or weights.shape != (k,) or np.unique(chosen).size != k
            or chosen.min() < 0 or chosen.max() >= pool.n_items):
        raise IRTError(f"Anchor selector {method!r} returned {chosen.size} items "
                       f"({np.unique(chosen).size} distinct) and {weights.size} weights for "
                       f"k = {k} from a bank of {pool.n_items} items.",
                       fix="return k distinct item indices in [0, n_items) and k weights.")
    if pool is not bank:
        chosen = selectable[chosen]
        weights = _cover_flagged(bank, chosen, weights)
    return AnchorSet(chosen, tuple(bank.item_ids[i] for i in chosen), weights, method, seed)


def union_anchors(bank: ItemBank, core: AnchorSet, extra: Sequence[int | str]) -> AnchorSet:
    """The core's items (weights kept) followed by ``extra`` items (bank indices or ids)
    with weight 0 and ``in_core`` False: one model's adaptive test as an anchor set.

    Why weight 0: the core is a sample of the bank its weights describe; top-up items are
    chosen where the model's own answers are most uncertain, so weighting them into the
    anchor mean would bias it (towards 50% for every model). They enter the estimators
    through the ability fit (p-, gp-, mp-, gmp-IRT: the items answered count as observed),
    as AIPW's regressors, and through the held-out blend weights, which are measured on
    this very item set (irt/estimators.py).
    """
    lookup = {item: i for i, item in enumerate(bank.item_ids)}
    indices = list(int(i) for i in core.indices)
    have = set(indices)
    for item in extra:
        index = lookup.get(item) if isinstance(item, str) else int(item)
        if index is None or not 0 <= index < bank.n_items:
            raise IRTError(f"Top-up item {item!r} is not in the bank.",
                           fix="choose top-up items among the bank's items.")
        if index not in have:
            indices.append(index)
            have.add(index)
    n_extra = len(indices) - core.k
    chosen = np.array(indices, dtype=int)
    return AnchorSet(chosen, tuple(bank.item_ids[i] for i in chosen),
                     np.concatenate([core.weights, np.zeros(n_extra)]), f"{core.method}+adaptive",
                     core.seed, np.concatenate([core.core_mask, np.zeros(n_extra, dtype=bool)]))


def extend_anchors(bank: ItemBank, anchors: AnchorSet, extra: int) -> AnchorSet:
    """``anchors`` plus ``extra`` more items of ``bank``, for re-scoring a close call.

    The new items are those a larger selection by the same method and seed picks that
    ``anchors`` lacks (so the extension follows the same design), topped up at random
    from the remaining items; every item of the union weighs 1/k (the IRT estimators use
    the answers, not the weights). Deterministic.
    """
    if extra < 1:
        raise IRTError(f"extend_anchors needs extra ≥ 1 items, got {extra}.",
                       fix="ask for at least one more item.")
    have = set(int(i) for i in anchors.indices)
    room = np.setdiff1d(bank.selectable, anchors.indices).size  # flagged items are never added
    extra = min(extra, room)
    if extra == 0:
        return anchors
    method = anchors.method if anchors.method in SELECTORS else "random"
    wider = select_anchors(bank, min(bank.selectable.size, len(have) + extra), method,
                           anchors.seed)
    new = [int(i) for i in wider.indices if int(i) not in have][:extra]
    if len(new) < extra:
        rest = np.setdiff1d(bank.selectable, np.array(sorted(have | set(new)), int))
        rng = np.random.default_rng(anchors.seed + 1)
        new += [int(i) for i in rng.choice(rest, size=extra - len(new), replace=False)]
    chosen = np.array(sorted(have | set(new)), dtype=int)
    return AnchorSet(chosen, tuple(bank.item_ids[i] for i in chosen),
                     np.full(chosen.size, 1.0 / chosen.size), f"{anchors.method}+extended",
                     anchors.seed)
