"""sorted_slice_mask keeps exactly the entries torch's CPU sort puts at [lo, hi), on
tensors full of ties; and torch's CPU sort is the libstdc++ introsort it replays."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from merge3.methods import sort_kernel, sort_select
from merge3.methods.sort_select import sorted_slice_mask
from merge3.methods.sparsify import magnitude_mask, outlier_mask


@pytest.fixture(autouse=True, params=["compiled", "replay"])
def selection(request, monkeypatch):
    """Every test runs on both ways of selecting: std::sort compiled with numba
    (sort_kernel) and the vectorised torch replay used without numba."""
    if request.param == "compiled":
        assert sort_kernel.AVAILABLE, "numba is pinned in requirements.lock"
    monkeypatch.setattr(sort_kernel, "AVAILABLE", request.param == "compiled")
    return request.param


def _std_sort(items: list, less: Callable[[object, object], bool]) -> list:
    """A line-by-line Python model of libstdc++'s std::sort (introsort, heap sort at the
    depth limit, final insertion sort), returning the items in sorted order."""
    v = list(items)

    def move_median_to_first(result: int, a: int, b: int, c: int) -> None:
        if less(v[a], v[b]):
            pick = b if less(v[b], v[c]) else (c if less(v[a], v[c]) else a)
        elif less(v[a], v[c]):
            pick = a
        else:
            pick = c if less(v[b], v[c]) else b
        v[result], v[pick] = v[pick], v[result]

    def partition(first: int, last: int, pivot: int) -> int:
        while True:
            while less(v[first], v[pivot]):
                first += 1
            last -= 1
            while less(v[pivot], v[last]):
                last -= 1
            if not first < last:
                return first
            v[first], v[last] = v[last], v[first]
            first += 1

    def adjust_heap(first: int, hole: int, size: int, value: object) -> None:
        top, child = hole, hole
        while child < (size - 1) // 2:
            child = 2 * (child + 1)
            if less(v[first + child], v[first + child - 1]):
                child -= 1
            v[first + hole] = v[first + child]
            hole = child
        if size % 2 == 0 and child == (size - 2) // 2:
            child = 2 * (child + 1)
            v[first + hole] = v[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and less(v[first + parent], value):
            v[first + hole] = v[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        v[first + hole] = value

    def heap_sort(first: int, last: int) -> None:
        size = last - first
        for parent in range((size - 2) // 2, -1, -1):
            adjust_heap(first, parent, size, v[first + parent])
        for end in range(last - 1, first, -1):
            value = v[end]
            v[end] = v[first]
            adjust_heap(first, 0, end - first, value)

    def introsort(first: int, last: int, depth: int) -> None:
        while last - first > 16:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            move_median_to_first(first, first + 1, first + (last - first) // 2, last - 1)
            cut = partition(first + 1, last, first)
            introsort(cut, last, depth)
            last = cut

    if len(v) > 1:
        introsort(0, len(v), 2 * (len(v).bit_length() - 1))
        for i in range(1, len(v)):  # the final insertion sort (stable)
            item, j = v[i], i
            while j > 0 and less(item, v[j - 1]):
                v[j] = v[j - 1]
                j -= 1
            v[j] = item
    return v


def _mcilroy_killer(n: int) -> list[float]:
    """Values that drive the introsort to its depth limit: McIlroy's adversary ("A killer
    adversary for quicksort", 1999) run against the model above."""
    gas = float(n)
    values = [gas] * n
    state = {"solid": 0, "candidate": 0}

    def less(x: int, y: int) -> bool:
        if values[x] == gas and values[y] == gas:
            frozen = x if x == state["candidate"] else y
            values[frozen] = float(state["solid"])
            state["solid"] += 1
        if values[x] == gas:
            state["candidate"] = x
        elif values[y] == gas:
            state["candidate"] = y
        return values[x] < values[y]

    _std_sort(list(range(n)), less)
    return values


def _tied(n: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """|τ|-like values with many ties: bf16/fp16 task vectors, float32, small ints."""
    if kind in ("bfloat16", "float16"):
        dtype = getattr(torch, kind)
        base = torch.randn(n, generator=generator).to(dtype)
        expert = (base.float() + 0.05 * torch.randn(n, generator=generator)).to(dtype)
        return (expert.float() - base.float()).abs()
    if kind == "float32":
        return torch.randn(n, generator=generator).abs()
    if kind == "ints":
        return torch.randint(0, 4, (n,), generator=generator).float()
    if kind == "constant":
        return torch.full((n,), 0.5)
    return torch.sort(torch.randint(0, 5, (n,), generator=generator).float()).values


def _by_sort(values: torch.Tensor, lo: int, hi: int, descending: bool) -> torch.Tensor:
    keep = torch.zeros(values.numel(), dtype=torch.bool)
    keep[torch.sort(values.reshape(-1), descending=descending).indices[lo:hi]] = True
    return keep.reshape(values.shape)


def test_torch_cpu_sort_is_the_libstdcxx_introsort():
    """The assumption everything rests on: torch.sort(stable=False) orders ties exactly as
    std::sort does (if a torch release changes its sort, this fails first)."""
    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        n = rng.choice([2, 15, 16, 17, 33, 100, 257, 1000, 2049])
        values = _tied(n, rng.choice(["bfloat16", "ints", "constant", "sorted"]), generator)
        descending = rng.random() < 0.5
        less = (lambda a, b: a[0] > b[0]) if descending else (lambda a, b: a[0] < b[0])
        model = [i for _, i in _std_sort(list(zip(values.tolist(), range(n))), less)]
        assert torch.sort(values, descending=descending).indices.tolist() == model
        assert torch.argsort(values, descending=descending).tolist() == model


@pytest.mark.parametrize("kind", ["bfloat16", "float16", "float32", "ints", "constant",
                                  "sorted"])
def test_slices_equal_the_sorts_on_ties(kind):
    rng = random.Random(1)
    generator = torch.Generator().manual_seed(1)
    for n in (1, 2, 15, 16, 17, 18, 101, 1023, 65537, 200_003):
        values = _tied(n, kind, generator)
        for _ in range(3):
            lo = rng.choice([0, rng.randint(0, n)])
            hi = rng.randint(lo, n)
            for descending in (False, True):
                got = sorted_slice_mask(values, lo, hi, descending=descending)
                assert torch.equal(got, _by_sort(values, lo, hi, descending)), (n, lo, hi)
                assert int(got.sum()) == hi - lo


def test_scratch_permutes_only_when_allowed():
    values = _tied(70_001, "bfloat16", torch.Generator().manual_seed(2))
    before = values.clone()
    expected = _by_sort(values, 0, 35_000, True)
    assert torch.equal(sorted_slice_mask(values, 0, 35_000, descending=True), expected)
    assert torch.equal(values, before)  # untouched without scratch
    assert torch.equal(sorted_slice_mask(values, 0, 35_000, descending=True, scratch=True),
                       expected)
    assert not torch.equal(values, before)  # and used as work space with it


def test_the_depth_limit_heap_sort_is_replayed(monkeypatch, selection):
    """On McIlroy's adversarial input std::sort heap-sorts deep ranges; the replay does
    too, and still keeps the sort's entries."""
    calls = []
    heap_sort = sort_select._heap_sort
    monkeypatch.setattr(sort_select, "_heap_sort",
                        lambda v, i: (calls.append(len(v)), heap_sort(v, i)))
    values = torch.tensor(_mcilroy_killer(600))
    for lo, hi in ((0, 300), (250, 260), (590, 600)):
        for descending in (False, True):
            assert torch.equal(sorted_slice_mask(values, lo, hi, descending=descending),
                               _by_sort(values, lo, hi, descending))
    if selection == "replay":  # (the compiled kernel heap-sorts inside numba)
        assert calls, "the adversarial input did not reach the depth limit"


def test_edges_and_other_devices_or_dtypes():
    values = _tied(1000, "ints", torch.Generator().manual_seed(3)).reshape(10, 100)
    assert not sorted_slice_mask(values, 5, 5).any()
    assert sorted_slice_mask(values, 0, 1000).all()
    assert sorted_slice_mask(values, -3, 2000).all()  # clipped to [0, n)
    assert sorted_slice_mask(values, 3, 9).shape == (10, 100)
    as_bf16 = _tied(4097, "bfloat16", torch.Generator().manual_seed(7)).bfloat16()
    for lo, hi in ((0, 2000), (1000, 1017), (4000, 4097)):
        assert torch.equal(sorted_slice_mask(as_bf16, lo, hi, descending=True),
                           _by_sort(as_bf16, lo, hi, True))
    as_double = values.double()
    assert torch.equal(sorted_slice_mask(as_double, 100, 700, descending=True),
                       _by_sort(as_double, 100, 700, True))


def _by_argsort(delta: torch.Tensor, density: float) -> torch.Tensor:
    n = delta.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    if density > 0:
        keep[torch.argsort(delta.abs().reshape(-1), descending=True)[:max(1, int(density * n))]] \
            = True
    return keep.reshape(delta.shape)


@pytest.mark.parametrize("kind", ["bfloat16", "float16", "float32", "ints"])
@pytest.mark.parametrize("density", [0.0, 1e-6, 0.1, 0.5, 0.9, 0.999, 1.0])
def test_magnitude_mask_is_mergekits_argsort(kind, density):
    generator = torch.Generator().manual_seed(4)
    signs = torch.randint(0, 2, (257 * 131,), generator=generator).float().mul_(2).sub_(1)
    delta = (_tied(257 * 131, kind, generator) * signs).reshape(257, 131)
    assert torch.equal(magnitude_mask(delta, density), _by_argsort(delta, density))


@pytest.mark.parametrize("density,gamma", [(0.5, 0.01), (0.9, 0.2), (0.3, 0.0), (0.0, 0.1),
                                           (1.0, 0.1)])
def test_outlier_mask_is_mergekits_sort(density, gamma):
    delta = _tied(50_021, "bfloat16", torch.Generator().manual_seed(5))
    n = delta.numel()
    keep_n, top_n = int(density * n), int(gamma * n)
    bottom_n = max(0, n - keep_n - top_n)
    expected = torch.ones(n, dtype=torch.bool) if density >= 1 else \
        _by_sort(delta, bottom_n, bottom_n + keep_n, False)
    assert torch.equal(outlier_mask(delta, density, gamma), expected)


def test_one_thread_restores_the_thread_count():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        values = _tied(5000, "bfloat16", torch.Generator().manual_seed(6))
        assert torch.equal(sorted_slice_mask(values, 0, 2500, descending=True),
                           _by_sort(values, 0, 2500, True))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
