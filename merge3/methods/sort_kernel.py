"""std::sort's selection compiled: the entries torch's CPU sort puts at [lo, hi), by
running libstdc++'s introsort itself, skipping every range that cannot matter.

:mod:`merge3.methods.sort_select` explains why the set depends on the sort's algorithm
(ties at the cut) and replays the introsort with vectorised torch operations, ~10 passes
over a range per partition step. This is the same algorithm written as the scalar loops
of libstdc++'s ``std::sort`` on (value, index) pairs — median-of-three to the first
position, Hoare's unguarded partition, heap sort at depth 2·⌊log₂ n⌋, stable insertion
sort of runs of at most 16 — compiled with numba (LLVM), following only the ranges that
hold a boundary of [lo, hi). A partition step is one pass, so the whole selection is a
few passes over the tensor: ~5–10 ns per entry where the vectorised replay costs ~45.

numba is an optional dependency (pinned in requirements.lock); without it, or off the
CPU, :func:`merge3.methods.sort_select.sorted_slice_mask` uses the vectorised replay.
The first call compiles the kernel (~2–5 s; cached on disk by numba afterwards).
"""

from __future__ import annotations

import importlib.util

import numpy as np

__all__ = ["AVAILABLE", "select_mask"]

AVAILABLE = importlib.util.find_spec("numba") is not None

_KERNEL = None


def _build():  # noqa: C901  (the introsort, kept in one function for the compiler)
    import numba

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _insertion_sort(v, ids, first, last):
        for i in range(first + 1, last):
            value, ident = v[i], ids[i]
            j = i
            while j > first and value < v[j - 1]:
                v[j], ids[j] = v[j - 1], ids[j - 1]
                j -= 1
            v[j], ids[j] = value, ident

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _adjust_heap(v, ids, first, hole, size, value, ident):
        top = hole
        child = hole
        while child < (size - 1) // 2:
            child = 2 * (child + 1)
            if v[first + child] < v[first + child - 1]:
                child -= 1
            v[first + hole], ids[first + hole] = v[first + child], ids[first + child]
            hole = child
        if size % 2 == 0 and child == (size - 2) // 2:
            child = 2 * (child + 1)
            v[first + hole], ids[first + hole] = v[first + child - 1], ids[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and v[first + parent] < value:
            v[first + hole], ids[first + hole] = v[first + parent], ids[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        v[first + hole], ids[first + hole] = value, ident

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _heap_sort(v, ids, first, last):
        size = last - first
        for parent in range((size - 2) // 2, -1, -1):
            _adjust_heap(v, ids, first, parent, size, v[first + parent], ids[first + parent])
        for end in range(last - 1, first, -1):
            value, ident = v[end], ids[end]
            v[end], ids[end] = v[first], ids[first]
            _adjust_heap(v, ids, first, 0, end - first, value, ident)

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _median_to_first(v, ids, result, a, b, c):
        if v[a] < v[b]:
            if v[b] < v[c]:
                pick = b
            elif v[a] < v[c]:
                pick = c
            else:
                pick = a
        elif v[a] < v[c]:
            pick = a
        elif v[b] < v[c]:
            pick = c
        else:
            pick = b
        v[result], v[pick] = v[pick], v[result]
        ids[result], ids[pick] = ids[pick], ids[result]

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _partition(v, ids, first, last, pivot):
        pv = v[pivot]
        while True:
            while v[first] < pv:
                first += 1
            last -= 1
            while pv < v[last]:
                last -= 1
            if not first < last:
                return first
            v[first], v[last] = v[last], v[first]
            ids[first], ids[last] = ids[last], ids[first]
            first += 1

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _mark(keep, ids, first, last):
        for i in range(first, last):
            keep[ids[i]] = True

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def select(v, ids, lo, hi, keep):
        n = v.shape[0]
        depth0 = 0
        size = n
        while size > 1:  # 2·⌊log₂ n⌋, libstdc++'s __lg
            size >>= 1
            depth0 += 1
        stack = np.empty((128 + 4 * depth0, 3), dtype=np.int64)
        stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 2 * depth0
        top = 1
        while top:
            top -= 1
            first, last, depth = stack[top, 0], stack[top, 1], stack[top, 2]
            while True:
                if last <= lo or first >= hi:
                    break  # wholly outside [lo, hi): dropped, its order never matters
                if lo <= first and last <= hi:
                    _mark(keep, ids, first, last)  # wholly inside: kept
                    break
                if last - first <= 16:  # the final insertion sort orders a run stably
                    _insertion_sort(v, ids, first, last)
                    _mark(keep, ids, max(first, lo), min(last, hi))
                    break
                if depth == 0:  # std::sort heap-sorts this range: a sorted run is final
                    _heap_sort(v, ids, first, last)
                    _mark(keep, ids, max(first, lo), min(last, hi))
                    break
                depth -= 1
                _median_to_first(v, ids, first, first + 1, first + (last - first) // 2,
                                 last - 1)
                cut = _partition(v, ids, first + 1, last, first)
                stack[top, 0], stack[top, 1], stack[top, 2] = cut, last, depth
                top += 1  # at most two of the pushed ranges hold a boundary at each level
                last = cut

    return select


def select_mask(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bool mask of the entries at positions [lo, hi) of std::sort's ascending order of
    ``values`` (1-D, float32 or float64, no NaN). ``values`` is permuted in place."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build()
    n = values.shape[0]
    ids = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    keep = np.zeros(n, dtype=np.bool_)
    _KERNEL(values, ids, lo, hi, keep)
    return keep
