"""The exact k-th smallest value of a row spread over a whole model, streamed.

FusionBench's TIES (``topk_values_mask``) and the PCB authors' code flatten each task
vector of the whole model into one row and take a k-th value of it. merge3 never holds a
model at once, so the same number is found by radix selection on the values' bit patterns
(float32: 2 passes, float64: 4): each pass counts one 16-bit digit of an order-preserving
integer key among the values whose higher digits match the digits found so far, and the
digit of the k-th value is where the counts' running sum reaches k. The result is the
k-th value exactly — ``torch.kthvalue`` of the concatenated row, ties included.

Memory: one 65,536-bin int64 histogram (512 KiB) per row and pass; nothing model-sized.
The first pass does not depend on k, so a search caches it (``first_pass``/``kth``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["RowStream", "FirstPass", "first_pass", "kth", "kth_values"]

# A stream: called anew for every pass, it yields, tensor by tensor, one tensor of values
# per row (every pass must yield the same values in the same order).
RowStream = Callable[[], Iterable[Sequence[torch.Tensor]]]

_DIGIT = 16
_BINS = 1 << _DIGIT


def _keys(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed int64 keys in the order of the float values (-0 just below +0)."""
    if bits == 32:
        raw = values.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
        magnitude = 0x7FFFFFFF
    else:
        raw = values.to(torch.float64).contiguous().view(torch.int64)
        magnitude = 0x7FFFFFFFFFFFFFFF
    # A negative float's bits order backwards: flip them (the sign bit stays set).
    return torch.where(raw < 0, raw ^ magnitude, raw).reshape(-1)


def _value(key: int, bits: int) -> float:
    if key < 0:
        key ^= 0x7FFFFFFF if bits == 32 else 0x7FFFFFFFFFFFFFFF
    if bits == 32:
        return struct.unpack("<f", struct.pack("<i", key))[0]
    return struct.unpack("<d", struct.pack("<q", key))[0]


def _digit(keys: torch.Tensor, level: int, bits: int) -> torch.Tensor:
    shift = bits - _DIGIT * (level + 1)
    digit = keys >> shift
    # the top digit is signed; offset it so that bins are in key order
    return digit + _BINS // 2 if level == 0 else digit & (_BINS - 1)


@dataclass(frozen=True)
class FirstPass:
    """The top-digit histogram of every row, and how many values each row has."""

    bits: int
    counts: tuple[torch.Tensor, ...]  # per row: (_BINS,) int64
    sizes: tuple[int, ...]


def _histograms(stream: RowStream, rows: int, level: int, bits: int,
                prefixes: Sequence[int | None]) -> list[torch.Tensor]:
    counts = [torch.zeros(_BINS, dtype=torch.int64) for _ in range(rows)]
    shift = bits - _DIGIT * level
    for values in stream():
        for row, row_values in enumerate(values):
            if prefixes[row] is None:
                continue
            keys = _keys(row_values, bits)
            if level:
                keys = keys[(keys >> shift) == prefixes[row]]
            counts[row] += torch.bincount(_digit(keys, level, bits).cpu(), minlength=_BINS)
    return counts


def _bits(stream: RowStream) -> int:
    for values in stream():
        for row_values in values:
            return 64 if row_values.dtype == torch.float64 else 32
    return 32


def first_pass(stream: RowStream, rows: int) -> FirstPass:
    """The k-independent first pass over ``stream`` (``rows`` rows)."""
    bits = _bits(stream)
    counts = _histograms(stream, rows, 0, bits, [0] * rows)
    return FirstPass(bits, tuple(counts), tuple(int(c.sum()) for c in counts))


def _locate(counts: torch.Tensor, k: int) -> tuple[int, int]:
    """(bin holding the k-th value, k within that bin)."""
    running = torch.cumsum(counts, 0)
    digit = int(torch.searchsorted(running, torch.tensor(k, dtype=running.dtype)))
    before = int(running[digit - 1]) if digit else 0
    return digit, k - before


def kth(stream: RowStream, first: FirstPass, ks: Sequence[int | None]) -> list[float | None]:
    """The ks[r]-th smallest value (1-based) of each row r (None where ks[r] is None)."""
    bits, rows = first.bits, len(first.counts)
    for row, k in enumerate(ks):
        if k is not None and not 1 <= k <= first.sizes[row]:
            raise ValueError(f"row {row}: k = {k} is outside 1..{first.sizes[row]}")
    prefixes: list[int | None] = []
    remaining: list[int | None] = []
    for row, k in enumerate(ks):
        if k is None:
            prefixes.append(None), remaining.append(None)
            continue
        digit, within = _locate(first.counts[row], k)
        prefixes.append(digit - _BINS // 2), remaining.append(within)  # the signed top digit
    for level in range(1, bits // _DIGIT):
        counts = _histograms(stream, rows, level, bits, prefixes)
        for row in range(rows):
            if prefixes[row] is None:
                continue
            digit, remaining[row] = _locate(counts[row], remaining[row])
            prefixes[row] = (prefixes[row] << _DIGIT) | digit
    return [None if p is None else _value(p, bits) for p in prefixes]


def kth_values(stream: RowStream, ks: Sequence[int | None]) -> list[float | None]:
    """Both passes at once: the ks[r]-th smallest value of each row r."""
    return kth(stream, first_pass(stream, len(ks)), ks)
