"""PCB merging: parameter competition balancing (Du et al., NeurIPS 2024,
https://arxiv.org/abs/2410.02396; authors' code github.com/duguodong7/pcb-merging,
``pcb-merging.py``: ``PCB_merge``, ``clamp``, ``normalize``).

Over the task vectors τ_i of T tasks, each flattened over the whole model:

1. clamp |τ_i| to its own [q, 1 − q] quantiles, q = 0.0001 (ĉ_i; τ̂_i = sign(τ_i)·ĉ_i);
2. intra-balancing exp(T·norm(ĉ_i)²) (norm: min-max over the row), inter-balancing
   tanh(τ_i ⊙ Σ_j τ_j); their product β_i;
3. drop: raise β_i below its (1 − r) quantile to it and min-max normalise, so the lowest
   1 − r of each row get score 0 (r = ``pcb_ratio``);
4. τ_m = Σ_i w_i s_i τ̂_i / max(Σ_i s_i, 1e-12), θ = θ_0 + λ τ_m (w_i: the authors'
   per-task "lams", searched in their evolutionary variant; 1 by default).

The quantiles are sorted positions of the row, ``sorted[int(d·q)]`` and
``sorted[int(d·(1 − q) − 1)]``, and ``trim_scope: model`` (the default, as the authors'
code) takes them over the whole model, exactly (``merge3.methods.model_select``);
``trim_scope: tensor`` takes them per tensor, which needs no whole-model pass. Where a
row's min equals its max (a task that did not move a tensor), min-max normalisation
gives 0 (the reference divides by zero there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from merge3.errors import MergeError, RecipeError
from merge3.methods.base import merge_method
from merge3.methods.model_select import first_pass, kth
from merge3.methods.sparsify import check_trim_scope

CLAMP_RATIO = 0.0001  # both tails of |τ|, as in the authors' pcb-merging.py


def _rank_low(size: int, ratio: float) -> int:
    """1-based rank of ``sorted_x[int(d * ratio)]``."""
    return int(size * ratio) + 1


def _rank_high(size: int, ratio: float) -> int:
    """1-based rank of ``sorted_x[int(d * (1 - ratio) - 1)]``."""
    return int(size * (1 - ratio) - 1) + 1


def _normalized(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    if high == low:
        return torch.zeros_like(x)
    return (x - low) / (high - low)


def _balancing(deltas: Sequence[torch.Tensor], clamps: Sequence[tuple[float, float]]
               ) -> list[torch.Tensor]:
    """β_i of every task on one tensor, given each task's |τ| clamp bounds."""
    total = torch.stack(list(deltas)).sum(0)
    count = len(deltas)
    out = []
    for delta, (low, high) in zip(deltas, clamps):
        intra = torch.exp(count * _normalized(delta.abs().clamp(low, high), low, high) ** 2)
        out.append(intra * torch.tanh(delta * total))
    return out


def _tensor_stats(deltas: Sequence[torch.Tensor], ratio: float) -> dict[str, list]:
    """The quantiles PCB needs, per tensor (``trim_scope: tensor``)."""
    size = deltas[0].numel()
    clamps = []
    for delta in deltas:
        flat = delta.abs().reshape(-1)
        clamps.append((float(torch.kthvalue(flat, _rank_low(size, CLAMP_RATIO)).values),
                       float(torch.kthvalue(flat, _rank_high(size, CLAMP_RATIO)).values)))
    drops = []
    for beta in _balancing(deltas, clamps):
        flat = beta.reshape(-1)
        drops.append((float(torch.kthvalue(flat, _rank_low(size, 1 - ratio)).values),
                      float(flat.max())))
    return {"clamp": clamps, "drop": drops}


Stream = Callable[[], Iterator[tuple[str, list[torch.Tensor], torch.Tensor | None]]]


def _check_ratio(ratio: float) -> float:
    if not 0 < ratio <= 1:
        raise RecipeError(f"pcb: pcb_ratio is {ratio!r}; it is the fraction of each task's "
                          "balanced scores kept, and keeping none leaves nothing to merge.",
                          fix="give pcb_ratio in (0, 1] (0.1: the authors' default).")
    return ratio


def pcb_model_pass(stream: Stream, setting: Callable[[str], Any], memo: dict) -> Any:
    """PCB's quantiles over the whole model (``trim_scope: model``; else None). The clamp
    bounds and the score histograms do not depend on the genome and stay in ``memo``."""
    if check_trim_scope(setting("trim_scope"), "pcb") == "tensor":
        return None
    ratio = _check_ratio(float(setting("pcb_ratio")))

    def magnitudes() -> Iterator[list[torch.Tensor]]:
        for _, tensors, base in stream():
            yield [(x - base).abs() for x in tensors]

    if "clamp" not in memo:
        rows = len(next(iter(stream()))[1])
        first = first_pass(magnitudes, rows)
        lows = kth(magnitudes, first, [_rank_low(n, CLAMP_RATIO) for n in first.sizes])
        highs = kth(magnitudes, first, [_rank_high(n, CLAMP_RATIO) for n in first.sizes])
        memo["clamp"] = list(zip(lows, highs))
    clamps = memo["clamp"]

    def betas() -> Iterator[list[torch.Tensor]]:
        for _, tensors, base in stream():
            yield _balancing([x - base for x in tensors], clamps)

    if "beta" not in memo:
        first = first_pass(betas, len(clamps))
        memo["beta"] = (first, kth(betas, first, list(first.sizes)))  # each row's maximum
    first, highs = memo["beta"]
    if ratio not in memo:
        lows = kth(betas, first, [_rank_low(n, 1 - ratio) for n in first.sizes])
        memo[ratio] = {"clamp": clamps, "drop": list(zip(lows, highs))}
    return memo[ratio]


@merge_method(
    "pcb",
    pretty_name="PCB merging",
    reference="https://arxiv.org/abs/2410.02396",
    per_model={"weight": 1.0},
    masks=True,
    model_pass=pcb_model_pass,
    ranges={"pcb_ratio": (0.0, 1.0)},
)
def pcb(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    name: str = "",
    model_stats: Any = None,
    pcb_ratio: float = 0.1,
    lambda_: float = 1.0,
    trim_scope: str = "model",
) -> torch.Tensor:
    """θ_0 + λ·Σ_i w_i s_i τ̂_i / Σ_i s_i with PCB's balanced, dropped scores s_i (keep the
    top ``pcb_ratio`` of each task's scores; 0.1, the authors' default)."""
    deltas = [t - base for t in tensors]
    if check_trim_scope(trim_scope, "pcb") == "tensor":
        stats = _tensor_stats(deltas, _check_ratio(float(pcb_ratio)))
    elif model_stats is None:
        raise MergeError(f"pcb: tensor {name!r}: trim_scope: model needs the whole model's "
                         "task vectors, and this merge sees one tensor (a slice, or "
                         "merge_tensor called directly).",
                         fix="merge whole models (merge3 merge, a search), or use "
                             "trim_scope: tensor.")
    else:
        stats = model_stats
    scores = [_normalized(beta.clamp(low, high), low, high)
              for beta, (low, high) in zip(_balancing(deltas, stats["clamp"]), stats["drop"])]
    merged = torch.zeros_like(base)
    for delta, score, w, (low, high) in zip(deltas, scores, weight, stats["clamp"]):
        clamped = torch.sign(delta) * delta.abs().clamp(low, high)
        merged += clamped * float(w) * score
    total = torch.stack(scores).sum(0).clamp(min=1e-12)
    return base + lambda_ * (merged / total)
