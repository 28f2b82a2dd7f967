"""Which entries torch's CPU sort puts at positions [lo, hi), found without sorting.

mergekit's TIES keeps ``argsort(|τ|, descending=True)[:k]`` and its Model Breadcrumbs
``sort(|τ|).indices[a:b]``. Where magnitudes tie at the cut (bfloat16 task vectors tie
there almost always), *which* of the equal entries are kept is decided by the sort's
algorithm. torch's CPU ``sort``/``argsort`` with ``stable=False`` is libstdc++'s
``std::sort`` on (value, index) pairs (checked against a line-by-line Python model of it
in tests/merge3/test_sort_select.py): an introsort with median-of-three pivots, Hoare's
unguarded partition, a depth limit of 2·⌊log₂ n⌋ and a final insertion sort over runs of
at most 16 entries. It is not stable (equal values leave in no index order), so no simple
rule such as "the first by index" gives the same set.

The set at positions [lo, hi) does not need the whole sort, though. Each partition step
moves entries only within its range, and a range that lies wholly inside or outside
[lo, hi) can be left unsorted: its entries are all kept or all dropped. So this module
replays the introsort's steps — the same pivots and the same swaps, computed with
vectorised tensor operations — only on the (at most two) ranges that contain a boundary,
like quickselect (Hoare 1961) following the pivots std::sort would pick. That is
O(n) expected work instead of O(n log n), and it runs on torch's intra-op threads.

The one partition step, vectorised: with the pivot p at the range's first position, the
left scan stops at entries ``>= p`` (ascending order), the right scan at entries ``<= p``.
The j-th swap exchanges the j-th left stop A_j (from the left) with the j-th right stop
B_j (from the right) for as long as A_j < B_j; with J such swaps the range splits at
min(A_{J+1}, B_J). Where a range would reach the depth limit (std::sort then heap-sorts
it), the heap sort is replayed too, in Python: only inputs built against median-of-three
pivots get there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from merge3.methods import sort_kernel

__all__ = ["sorted_slice_mask", "one_thread", "SMALL_RUN"]

SMALL_RUN = 16  # libstdc++'s _S_threshold: ranges this short are left to insertion sort


def _adjust_heap(values: list[float], ids: list[int], hole: int, size: int,
                 value: float, value_id: int) -> None:
    """libstdc++'s ``__adjust_heap`` then ``__push_heap`` (a max-heap under ``<``)."""
    top = hole
    child = hole
    while child < (size - 1) // 2:
        child = 2 * (child + 1)
        if values[child] < values[child - 1]:
            child -= 1
        values[hole], ids[hole] = values[child], ids[child]
        hole = child
    if size % 2 == 0 and child == (size - 2) // 2:
        child = 2 * (child + 1)
        values[hole], ids[hole] = values[child - 1], ids[child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and values[parent] < value:
        values[hole], ids[hole] = values[parent], ids[parent]
        hole = parent
        parent = (hole - 1) // 2
    values[hole], ids[hole] = value, value_id


def _heap_sort(values: list[float], ids: list[int]) -> None:
    """libstdc++'s ``__partial_sort(first, last, last)``: what std::sort does to a range
    at its depth limit (make_heap, then sort_heap), in place. Pure Python: reached only
    on inputs built to defeat median-of-three pivots."""
    size = len(values)
    if size < 2:
        return
    for parent in range((size - 2) // 2, -1, -1):
        _adjust_heap(values, ids, parent, size, values[parent], ids[parent])
    for last in range(size - 1, 0, -1):
        value, value_id = values[last], ids[last]
        values[last], ids[last] = values[0], ids[0]
        _adjust_heap(values, ids, 0, last, value, value_id)


def _median_to_first(values: torch.Tensor, ids: torch.Tensor | None) -> int:
    """libstdc++'s ``__move_median_to_first(first, first+1, mid, last-1)``, ascending;
    returns the position swapped with the first."""
    size = values.numel()
    a, b, c = 1, size // 2, size - 1
    va, vb, vc = (float(v) for v in values[[a, b, c]])
    if va < vb:
        chosen = b if vb < vc else (c if va < vc else a)
    elif va < vc:
        chosen = a
    else:
        chosen = c if vb < vc else b
    _swap(values, 0, chosen)
    if ids is not None:
        _swap(ids, 0, chosen)
    return chosen


def _swap(tensor: torch.Tensor, i: int, j: int) -> None:
    tensor[[i, j]] = tensor[[j, i]]


def _chunk_size(size: int) -> int:
    """The counting granularity for a range of ``size``: about 4·√size (a power of 2), so
    the per-chunk counts and the one chunk searched in full both stay small."""
    return 1 << max(8, (4 * math.isqrt(size)).bit_length() - 1)


def _cumulative_counts(mask: torch.Tensor, chunk: int) -> torch.Tensor:
    """Running totals of True per ``chunk``-sized piece of ``mask`` (inclusive, int64)."""
    size = mask.numel()
    full = size // chunk
    counts = torch.empty(full + (size % chunk > 0), dtype=torch.int64)
    if full:  # (a bool tensor's dim-wise count_nonzero is ~10x slower than this sum)
        counts[:full] = mask[:full * chunk].view(torch.uint8).view(full, chunk) \
            .sum(1, dtype=torch.int32)
    if size % chunk:
        counts[full] = torch.count_nonzero(mask[full * chunk:])
    return counts.cumsum_(0)


def _nth_true(mask: torch.Tensor, cumulative: torch.Tensor, chunk: int, rank: int) -> int:
    """The position of ``mask``'s True number ``rank`` (0-based)."""
    piece = int(torch.searchsorted(cumulative, rank + 1))
    before = int(cumulative[piece - 1]) if piece else 0
    start = piece * chunk
    return start + int(torch.nonzero(mask[start:start + chunk])[rank - before])


def _positions(mask: torch.Tensor, count: int) -> torch.Tensor:
    """``torch.nonzero(mask)`` as a 1-D int64 tensor, given its ``count`` of True. A sparse
    mask is scanned 8 entries at a time as int64 words (nonzero costs ~6 ns per entry
    scanned, whatever the density), then only the nonzero words' bytes are looked at."""
    size = mask.numel()
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)
    if 16 * count > size or size < 4096:
        return torch.nonzero(mask).squeeze(1)
    head = (-mask.data_ptr()) % 8  # entries before the first 8-byte boundary
    words = (size - head) // 8
    tail = head + 8 * words
    body = mask[head:tail].view(torch.int64)
    hit = torch.nonzero(body).squeeze(1)  # the words holding a True
    pairs = torch.nonzero(body[hit].view(torch.uint8).view(-1, 8))  # (word, byte), ascending
    inside = hit[pairs[:, 0]].mul_(8).add_(pairs[:, 1]).add_(head)
    return torch.cat([torch.nonzero(mask[:head]).squeeze(1), inside,
                      torch.nonzero(mask[tail:]).squeeze(1).add_(tail)])


def _partition(values: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Hoare's unguarded partition of ``values[1:]`` around the pivot ``values[0]``, in
    place; returns the cut and the positions swapped (A_j from the left, B_j from the
    right, paired: A_j's entry is now at B_j and B_j's at A_j).

    With L(q) the left stops before q and R(q) the right stops from q on, the number of
    swaps is J = max_q min(L(q), R(q)); it is found from chunk counts and one chunk's
    running sums, so that only the swapped positions are ever listed."""
    size = values.numel()
    pivot = values[0]
    left = values >= pivot  # the left scan stops here (from position 1)
    left[0] = False
    right = values <= pivot  # the right scan stops here
    chunk = _chunk_size(size)
    left_total, right_total = _cumulative_counts(left, chunk), _cumulative_counts(right, chunk)
    left_stops, right_stops = int(left_total[-1]), int(right_total[-1])
    # L and R at the chunk starts g = 0, C, 2C, ..., size
    zero = torch.zeros(1, dtype=torch.int64)
    left_at = torch.cat([zero, left_total])
    right_at = right_stops - torch.cat([zero, right_total])
    crossing = int(torch.count_nonzero(left_at < right_at))  # L < R before, L >= R from here
    swaps = 0
    if crossing:  # the maximum of min(L, R) lies between grid points crossing-1 and crossing
        start = (crossing - 1) * chunk
        end = min(start + chunk, size)
        left_here = torch.cat([zero, left[start:end].cumsum(0)]).add_(left_at[crossing - 1])
        right_here = torch.cat([zero, right[start:end].cumsum(0)]).neg_() \
            .add_(right_at[crossing - 1])
        swaps = int(torch.minimum(left_here, right_here).max())
    cut = _nth_true(left, left_total, chunk, swaps) if swaps < left_stops else size
    if swaps:
        cut = min(cut, _nth_true(right, right_total, chunk, right_stops - swaps))
    a = _positions(left[:cut], swaps)
    in_right = int(torch.count_nonzero(right[cut:]))  # J or J + 1
    b = _positions(right[cut:], in_right)[-swaps:].add_(cut).flip(0) if swaps else a[:0]
    moved = values[a]
    values[a] = values[b]
    values[b] = moved
    return cut, a, b


def _keep_run(keep: torch.Tensor, values: torch.Tensor, ids: torch.Tensor | None,
              start: int, lo: int, hi: int) -> None:
    """Mark the entries of a short run at global positions [lo, hi) (∩ the run): the
    final insertion sort orders a run stably and never moves an entry out of its run."""
    order = torch.sort(values, stable=True).indices
    chosen = order[max(lo - start, 0):max(min(hi - start, values.numel()), 0)]
    keep[chosen + start if ids is None else ids[chosen]] = True


def _select(scratch: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """The bool mask of the entries std::sort puts at [lo, hi); permutes ``scratch``."""
    n = scratch.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    # work: (global start, global end, ids of the range's entries or None = identity, depth)
    work: list[tuple[int, int, torch.Tensor | None, int]] = \
        [(0, n, None, 2 * (n.bit_length() - 1))]
    while work:
        start, end, ids, depth = work.pop()
        if end <= lo or start >= hi:
            continue  # wholly outside: dropped, its order never matters
        if lo <= start and end <= hi:  # wholly inside: kept
            if ids is None:
                keep[start:end] = True
            else:
                keep[ids] = True
            continue
        values = scratch[start:end]
        if end - start <= SMALL_RUN:
            _keep_run(keep, values, ids, start, lo, hi)
            continue
        if depth == 0:  # std::sort heap-sorts this range; so do we (a sorted run is final)
            run_values = values.tolist()
            run_ids = list(range(start, end)) if ids is None else ids.tolist()
            _heap_sort(run_values, run_ids)
            keep[run_ids[max(lo - start, 0):min(hi, end) - start]] = True
            continue
        median = _median_to_first(values, ids)
        cut, a, b = _partition(values)
        if ids is not None:
            moved = ids[a]
            ids[a] = ids[b]
            ids[b] = moved
            work.append((start, start + cut, ids[:cut], depth - 1))
            work.append((start + cut, end, ids[cut:], depth - 1))
            continue
        # the root (identity ids, start 0): each part's ids are its positions, except the
        # swapped ones (every A_j < cut <= every B_j), and then the median swap (0, median)
        for part_start, part_end, here, there in ((0, cut, a, b), (cut, n, b, a)):
            if part_end <= lo or part_start >= hi:
                continue
            if lo <= part_start and part_end <= hi:
                keep[part_start:part_end] = True
                keep[here] = False  # these entries moved out of the part...
                keep[there] = True  # ...and these moved in
                keep[[0, median]] = keep[[median, 0]].clone()
                continue
            part_ids = torch.arange(part_start, part_end)
            part_ids[here - part_start] = there
            was_first, was_median = part_ids == 0, part_ids == median
            part_ids[was_first] = median
            part_ids[was_median] = 0
            work.append((part_start, part_end, part_ids, depth - 1))
    return keep


def sorted_slice_mask(values: torch.Tensor, lo: int, hi: int, *,
                      descending: bool = False, scratch: bool = False) -> torch.Tensor:
    """Bool mask (like ``values``) of the entries at positions [lo, hi) of
    ``torch.sort(values.reshape(-1), descending=descending).indices`` on the CPU — the
    same set, ties included, in O(n) expected time.

    ``values``: a real floating tensor without NaN (1-D or any shape, flattened).
    ``scratch=True`` lets the selection permute ``values`` in place (saves a copy).
    Off the CPU, or where std::sort would heap-sort a range, this is the full sort.
    """
    flat = values.reshape(-1)
    n = flat.numel()
    lo, hi = max(lo, 0), min(hi, n)
    if lo >= hi:
        return torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    if lo == 0 and hi == n:
        return torch.ones(values.shape, dtype=torch.bool, device=values.device)
    if flat.device.type != "cpu" or not flat.is_floating_point():
        order = torch.sort(flat, descending=descending).indices
        keep = torch.zeros(n, dtype=torch.bool, device=values.device)
        keep[order[lo:hi]] = True
        return keep.reshape(values.shape)
    compiled = sort_kernel.AVAILABLE
    if compiled and flat.dtype not in (torch.float32, torch.float64):
        work = flat.float()  # bf16/fp16 to float32 is exact: the same order, the same ties
    else:
        work = flat if scratch and flat.is_contiguous() else flat.clone()
    if descending:  # KeyValueCompDesc (l > r) is the ascending order of the negated values
        work.neg_()
    if compiled:  # std::sort itself, compiled (merge3.methods.sort_kernel)
        keep = sort_kernel.select_mask(work.numpy(), lo, hi)
        return torch.from_numpy(keep).reshape(values.shape)
    with one_thread():
        return _select(work, lo, hi).reshape(values.shape)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block (restored after). The replay and
    block-wise loops issue thousands of small ops; on 2 cores loaded by other work each
    op's thread barrier waited for a descheduled thread: measured on a 2.6M-entry bf16
    task vector, 0.24 s on one thread vs 2.87 s on two."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
