"""Parity of `merge3 merge` with mergekit on the same recipes and the same checkpoints.

Builds small real checkpoints (tiny Llama and GPT-2, float32 and bfloat16, a base and
three experts), runs every recipe below with both tools, compares every output tensor and
writes the table to ``benchmarks/mergekit_parity/README.md`` (between the RESULTS markers).
mergekit runs through its own CLI from ``.venv-mergekit`` (``mergekit-multi``: all recipes
of a family in one process, ``mergekit-yaml`` for any it did not produce); merge3 runs
in this process exactly as ``merge3 merge RECIPE OUT`` does (``load_recipe`` + ``run_merge``).

    benchmarks/setup_mergekit.sh
    nice -n 10 .venv/bin/python benchmarks/mergekit_parity/run.py

A case passes when both outputs have the same tensor names, shapes and dtypes and every
tensor is ``torch.allclose`` at float32 tolerance (rtol 1e-5, atol 1e-6); a bfloat16
output element may also be one bfloat16 step (ulp) away: the rounding of float32 results
that differ in their last bit. DARE draws random masks, so its cases check
names, shapes and dtypes only; DELLA's cases compare the distribution of the pruned
update, and its kernels (with Arcee Fusion's) are compared value for value on every
tensor with both tools' generators seeded alike (``mergekit_kernels.py``). A case with
``expected_diff`` may differ only in the tensors a README convention names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MERGEKIT = ROOT / ".venv-mergekit" / "bin" / "mergekit-yaml"
RTOL, ATOL = 1e-5, 1e-6
LAYERS = 4
# Random cases with `distribution`: the fraction of entries that moved from the base may
# differ by this many binomial standard errors, the L1 norm of θ − θ_0 by this fraction.
DISTRIBUTION_SIGMAS, DISTRIBUTION_L1 = 5.0, 0.03

Paths = dict[str, str]


@dataclass(frozen=True)
class Case:
    """One recipe run by both tools; ``exact`` False compares names/shapes/dtypes only."""

    name: str
    recipe: Callable[[Paths], dict[str, Any]]
    what: str
    exact: bool = True
    archs: tuple[str, ...] = ("llama", "gpt2")
    # random methods whose draws cannot follow mergekit's (see DISTRIBUTION_SIGMAS):
    # pass on the kept fraction and the L1 norm of θ − θ_0 instead of the values
    distribution: bool = False
    # a difference the README explains: (regex of the only tensors allowed to differ, why)
    expected_diff: tuple[str, str] | None = None


def _models(paths: Paths, params: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"model": paths[name], "parameters": p} if p else {"model": paths[name]}
            for name, p in params.items()]


def _slices(paths: Paths, names: list[str]) -> list[dict[str, Any]]:
    return [{"sources": [{"model": paths[n], "layer_range": [0, LAYERS]} for n in names]}]


def _source(paths: Paths, name: str, start: int, end: int, **params: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"model": paths[name], "layer_range": [start, end]}
    if params:
        source["parameters"] = params
    return source


# Per-tensor filters that mergekit users write: attention and MLP tensors by substring.
ATTN = {"llama": "self_attn", "gpt2": "attn"}
MLP = "mlp"

CASES: list[Case] = [
    Case("linear", lambda p: {
        "merge_method": "linear",
        "models": _models(p, {"expert_1": {"weight": 1.0}, "expert_2": {"weight": 2.0},
                              "expert_3": {"weight": 0.5}}),
    }, "per-model weights, normalize (default true)"),
    Case("linear_no_normalize", lambda p: {
        "merge_method": "linear",
        "models": _models(p, {"expert_1": {"weight": 0.3}, "expert_2": {"weight": 0.45}}),
        "parameters": {"normalize": False},
    }, "normalize: false"),
    Case("linear_gradient_filter", lambda p: {
        "merge_method": "linear",
        "models": _models(p, {
            "expert_1": {"weight": [{"filter": MLP, "value": [0.1, 0.9]}, {"value": 0.5}]},
            "expert_2": {"weight": [{"filter": MLP, "value": [0.9, 0.1]}, {"value": 0.5}]},
        }),
    }, "weight: filter on mlp with a 2-point gradient, else 0.5"),
    Case("task_arithmetic", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "models": _models(p, {"base": {}, "expert_1": {"weight": 0.5},
                              "expert_2": {"weight": 0.3}, "expert_3": {"weight": 0.8}}),
    }, "base listed among models (as mergekit recipes do), weights"),
    Case("task_arithmetic_lambda_gradient", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": [0.2, 1.0]},
                              "expert_2": {"weight": [1.0, 0.1, 0.6]}}),
        "parameters": {"lambda": 0.7},
    }, "weight gradients [0.2,1.0] and [1.0,0.1,0.6], lambda 0.7"),
    Case("task_arithmetic_normalize", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.5}, "expert_2": {"weight": 1.5}}),
        "parameters": {"normalize": True},
    }, "normalize: true"),
    Case("ties", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.5},
                              "expert_2": {"weight": 0.6, "density": 0.7},
                              "expert_3": {"weight": 0.9, "density": 0.3}}),
    }, "weights, densities, normalize (default true)"),
    Case("ties_density_gradient", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": [0.2, 0.8]},
                              "expert_2": {"weight": 1.0, "density": [0.9, 0.4]}}),
        "parameters": {"normalize": False, "lambda": 1.2},
    }, "density gradients, normalize: false, lambda 1.2"),
    Case("ties_filters", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {
            "expert_1": {"weight": 1.0,
                         "density": [{"filter": MLP, "value": 0.3}, {"value": 0.8}]},
            "expert_2": {"weight": [{"filter": MLP, "value": 0.4}, {"value": 1.0}],
                         "density": 0.5},
        }),
        "parameters": {"int8_mask": True},
    }, "filtered density and weight, int8_mask"),
    Case("ties_global_defaults", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
        "parameters": {"weight": 0.7, "density": 0.4},
    }, "per-model weight/density given once under global parameters"),
    Case("breadcrumbs", lambda p: {
        "merge_method": "breadcrumbs", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.8, "gamma": 0.05},
                              "expert_2": {"weight": 0.7, "density": 0.6, "gamma": 0.02}}),
    }, "density and gamma per model"),
    Case("breadcrumbs_ties", lambda p: {
        "merge_method": "breadcrumbs_ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.7, "gamma": 0.05},
                              "expert_2": {"weight": 0.8, "density": 0.5, "gamma": 0.1}}),
        "parameters": {"normalize": True},
    }, "breadcrumbs masks + TIES sign election, normalize: true"),
    Case("slerp", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "models": _models(p, {"base": {}, "expert_1": {}}),
        "parameters": {"t": 0.3},
    }, "t 0.3 (models form)"),
    Case("slerp_canonical_llama", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "slices": _slices(p, ["base", "expert_1"]),
        "parameters": {"t": [
            {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
            {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
            {"value": 0.5},
        ]},
    }, "the canonical mergekit slerp recipe: slices, 5-point t gradients per filter",
        archs=("llama",)),
    Case("slerp_canonical_gpt2", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "slices": _slices(p, ["base", "expert_1"]),
        "parameters": {"t": [
            {"filter": "attn", "value": [0, 0.5, 0.3, 0.7, 1]},
            {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
            {"value": 0.5},
        ]},
    }, "the same on GPT-2 names", archs=("gpt2",)),
    Case("dare_linear", lambda p: {
        "merge_method": "dare_linear", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.6, "density": 0.5},
                              "expert_2": {"weight": 0.4, "density": 0.7}}),
    }, "random: names/shapes/dtypes only", exact=False),
    Case("dare_ties", lambda p: {
        "merge_method": "dare_ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.6, "density": 0.5},
                              "expert_2": {"weight": 0.4, "density": 0.7}}),
    }, "random: names/shapes/dtypes only", exact=False),
    # -- the methods added for issue 17 ---------------------------------------------------
    Case("della", lambda p: {
        "merge_method": "della", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.5},
                              "expert_2": {"weight": 0.6, "density": 0.7, "epsilon": 0.1},
                              "expert_3": {"weight": 0.9, "density": 0.4, "epsilon": 0.2}}),
    }, "random (della_magprune): kept fraction and L1 norm of θ − θ_0", exact=False,
        distribution=True),
    Case("della_linear", lambda p: {
        "merge_method": "della_linear", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.6, "density": 0.5},
                              "expert_2": {"weight": 0.4, "density": 0.6, "epsilon": 0.1}}),
        "parameters": {"lambda": 1.2},
    }, "random: kept fraction and L1 norm of θ − θ_0", exact=False, distribution=True),
    Case("sce", lambda p: {
        "merge_method": "sce", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
    }, "select_topk 1 (default): mean-square weights, sign election"),
    Case("sce_select_topk", lambda p: {
        "merge_method": "sce", "base_model": p["base"],
        "models": _models(p, {"base": {}, "expert_1": {}, "expert_2": {}, "expert_3": {}}),
        "parameters": {"select_topk": 0.3, "int8_mask": True},
    }, "select_topk 0.3, int8_mask, the base among models"),
    Case("model_stock", lambda p: {
        "merge_method": "model_stock", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
    }, "three models, per tensor"),
    Case("model_stock_filter_wise", lambda p: {
        "merge_method": "model_stock", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}}),
        "parameters": {"filter_wise": True},
    }, "two models, per row"),
    Case("karcher", lambda p: {
        "merge_method": "karcher",
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
    }, "three models, no base"),
    Case("karcher_with_base", lambda p: {
        "merge_method": "karcher", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}}),
        "parameters": {"max_iter": 20, "tol": 1e-6},
    }, "base_model given: one more input (mergekit's base handling), max_iter, tol"),
    Case("multislerp", lambda p: {
        "merge_method": "multislerp",
        "models": _models(p, {"expert_1": {"weight": 0.5}, "expert_2": {"weight": 0.2},
                              "expert_3": {"weight": 0.3}}),
    }, "three models, no base"),
    Case("multislerp_base", lambda p: {
        "merge_method": "multislerp", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": [0.2, 0.8]},
                              "expert_2": {"weight": [0.8, 0.2]}}),
    }, "task vectors around the base, weight gradients"),
    Case("nuslerp", lambda p: {
        "merge_method": "nuslerp",
        "models": _models(p, {"expert_1": {"weight": 0.3}, "expert_2": {"weight": 0.7}}),
    }, "two models, flat (default)"),
    Case("nuslerp_base_row_wise", lambda p: {
        "merge_method": "nuslerp", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0}, "expert_2": {"weight": 0.5}}),
        "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True},
    }, "around the base, per column (row_wise), not flattened"),
    Case("nearswap", lambda p: {
        "merge_method": "nearswap", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}}),
        "parameters": {"t": [0.002, 0.01]},
    }, "t gradient 0.002 → 0.01 (|Δ| ≈ 0.01)"),
    Case("arcee_fusion", lambda p: {
        "merge_method": "arcee_fusion", "base_model": p["base"],
        "models": _models(p, {"base": {}, "expert_2": {}}),
    }, "the base among models"),
    Case("ram", lambda p: {
        "merge_method": "ram", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
        "parameters": {"epsilon": 0.008},
    }, "epsilon 0.008: unique and shared entries"),
    Case("ramplus_tl", lambda p: {
        "merge_method": "ramplus_tl", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
        "parameters": {"epsilon": 0.008, "r": 0.5, "alpha": 0.4},
    }, "epsilon 0.008, r 0.5, alpha 0.4"),
    Case("passthrough_scale", lambda p: {
        "merge_method": "passthrough",
        "models": _models(p, {"expert_1": {"scale": [{"filter": MLP, "value": 0.5},
                                                     {"value": 1.0}]}}),
    }, "one model, per-tensor scale (mlp 0.5)"),
    Case("passthrough_frankenmerge", lambda p: {
        "merge_method": "passthrough",
        "slices": [{"sources": [_source(p, "expert_1", 0, 3)]},
                   {"sources": [_source(p, "expert_2", 1, 4,
                                        scale=[{"filter": MLP, "value": 0.5}])]},
                   {"sources": [_source(p, "expert_3", 3, 4)]}],
    }, "layers 0-2 of expert_1, 1-3 of expert_2 (mlp scaled 0.5), 3 of expert_3: 7 layers"),
    Case("slerp_two_slices", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "slices": [{"sources": [_source(p, "base", 0, 2), _source(p, "expert_1", 0, 2)],
                    "parameters": {"t": [0.1, 0.9]}},
                   {"sources": [_source(p, "base", 2, 4), _source(p, "expert_2", 2, 4)]}],
        "parameters": {"t": [{"filter": MLP, "value": [0.2, 0.6]}, {"value": 0.5}]},
    }, "slerp per slice: a gradient across each slice, slice parameters over global ones"),
    Case("ties_slices_stacked", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "slices": [{"sources": [_source(p, "base", 0, 4),
                                _source(p, "expert_1", 0, 4, weight=1.0, density=0.5),
                                _source(p, "expert_2", 0, 4, weight=0.7, density=0.6)]},
                   {"sources": [_source(p, "base", 2, 4),
                                _source(p, "expert_3", 2, 4, weight=1.0, density=0.4)]}],
    }, "a 6-layer TIES frankenmerge: layers 2-3 again, onto the base's own layers"),
    Case("task_arithmetic_slice_bases", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "slices": [{"sources": [_source(p, "base", 0, 2), _source(p, "expert_1", 0, 2,
                                                                 weight=0.8)]},
                   {"base_model": p["expert_1"],
                    "sources": [_source(p, "expert_1", 2, 4),
                                _source(p, "expert_2", 2, 4, weight=0.5),
                                _source(p, "expert_3", 2, 4, weight=0.5)],
                    "parameters": {"lambda": 0.9}}],
    }, "a slice with its own base_model (expert_1) and lambda; the last slice has more "
       "sources than the first", expected_diff=(
           r"^(lm_head\.weight|model\.norm\.weight|transformer\.ln_f\.(weight|bias))$",
           "post-layer tensors: mergekit drops the last slice's sources beyond the first "
           "slice's count (convention 8)")),
    Case("task_arithmetic_slice_bases_equal_counts", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "slices": [{"sources": [_source(p, "base", 0, 2), _source(p, "expert_1", 0, 2,
                                                                 weight=0.8),
                                _source(p, "expert_3", 0, 2, weight=0.3)]},
                   {"base_model": p["expert_1"],
                    "sources": [_source(p, "expert_1", 2, 4),
                                _source(p, "expert_2", 2, 4, weight=0.5),
                                _source(p, "expert_3", 2, 4, weight=0.5)],
                    "parameters": {"lambda": 0.9}}],
    }, "the same with as many sources in the first slice as in the last"),
    Case("karcher_slices_without_base", lambda p: {
        "merge_method": "karcher", "base_model": p["base"],
        "slices": [{"sources": [_source(p, "expert_1", 0, 4), _source(p, "expert_2", 0, 4)]}],
    }, "base_model given but not among the sources: karcher merges without it"),
    Case("filter_fallthrough", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {
            "expert_1": {"weight": 1.0, "density": [{"filter": MLP, "value": 0.3}]},
            "expert_2": {"weight": 1.0},
        }),
        "parameters": {"density": 0.6, "lambda": [{"filter": MLP, "value": 0.5}]},
    }, "a filter list that matches no tensor falls through to the global value, "
       "then to the default"),
]


# Run once more with `dtype: bfloat16` (bf16 arithmetic in mergekit) on the Llama family.
BF16_MATH_CASES = {"linear", "task_arithmetic", "ties", "slerp", "breadcrumbs"}


@dataclass
class Result:
    family: str
    case: str
    dtype_mode: str
    status: str
    tensors: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0  # max over tensors of max|Δ| / max|mergekit's tensor|
    beyond: int = 0  # elements outside the tolerance
    differing: int = 0
    numel: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_all(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensors[key] = handle.get_tensor(key)
    return tensors


def bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many bfloat16 values lie between a and b (0: equal, 1: neighbours).

    Counted on the sign-magnitude bit patterns mapped to a monotone integer line.
    """
    def line(x: torch.Tensor) -> torch.Tensor:
        bits = x.contiguous().view(torch.int16).int()
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)

    return (line(a) - line(b)).abs()


def compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
            exact: bool, result: Result) -> None:
    only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if only_ours or only_theirs:
        result.notes.append(f"names differ: merge3 only {only_ours[:3]}, "
                            f"mergekit only {only_theirs[:3]}")
    ok = not (only_ours or only_theirs)
    worst_name = ""
    for name in sorted(set(ours) & set(theirs)):
        a, b = ours[name], theirs[name]
        result.tensors += 1
        if a.shape != b.shape or a.dtype != b.dtype:
            result.notes.append(f"{name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
            ok = False
            continue
        if not exact:
            continue
        diff = (a.double() - b.double()).abs()
        result.numel += diff.numel()
        result.differing += int((diff > 0).sum())
        if diff.numel() and float(diff.max()) > result.max_abs:
            result.max_abs, worst_name = float(diff.max()), name
        if diff.numel():
            scale = float(b.double().abs().max())
            result.max_rel = max(result.max_rel, float(diff.max()) / scale if scale else
                                 float(diff.max()))
        close = diff <= ATOL + RTOL * b.double().abs()  # torch.allclose, element by element
        if a.dtype == torch.bfloat16:
            # One rounding step of float32 results that differ in their last bit. (Tiny
            # values after cancellation can be a few steps apart yet float32-close.)
            close |= bf16_ulps(a, b) <= 1
        result.beyond += int((~close).sum())
        ok &= bool(close.all())
    if worst_name and result.max_abs > 0:
        result.notes.append(f"largest diff in {worst_name}")
    result.status = "PASS" if ok else "FAIL"


def moved_from_base(merged: dict[str, torch.Tensor], base: dict[str, torch.Tensor]
                    ) -> tuple[int, int, float]:
    """(entries that differ from the base, floating entries, Σ|θ − θ_0|) over a model.

    Tensor names the base lacks (none in these cases) are skipped."""
    moved = total = 0
    l1 = 0.0
    for name, tensor in merged.items():
        if name not in base or not tensor.is_floating_point():
            continue
        delta = tensor.double() - base[name].double()
        moved += int((delta != 0).sum())
        total += delta.numel()
        l1 += float(delta.abs().sum())
    return moved, total, l1


def compare_distribution(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                         base: dict[str, torch.Tensor], result: Result) -> None:
    """Random methods whose draws merge3 cannot follow: the same distribution of the kept
    entries (their fraction, within DISTRIBUTION_SIGMAS binomial standard errors of the
    difference) and of the update's size (L1 within DISTRIBUTION_L1)."""
    moved3, total, l1_3 = moved_from_base(ours, base)
    movedk, _, l1_k = moved_from_base(theirs, base)
    p3, pk = moved3 / total, movedk / total
    pooled = (p3 + pk) / 2
    sigma = (2 * pooled * (1 - pooled) / total) ** 0.5
    ratio = l1_3 / l1_k if l1_k else float("inf")
    within = abs(p3 - pk) <= DISTRIBUTION_SIGMAS * max(sigma, 1e-12) and (
        abs(ratio - 1) <= DISTRIBUTION_L1)
    result.notes.append(f"moved from base: merge3 {p3:.4f}, mergekit {pk:.4f} "
                        f"({abs(p3 - pk) / max(sigma, 1e-12):.1f} σ); L1 of θ − θ_0 "
                        f"merge3/mergekit {ratio:.4f}")
    if result.status == "PASS" and not within:
        result.status = "FAIL"


def explain_difference(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                       expected: tuple[str, str], result: Result) -> None:
    """A FAIL whose differing tensors are exactly the ones a documented convention names
    becomes "DIFF (documented)"; any other difference stays a FAIL."""
    pattern, why = expected
    if result.status != "FAIL" or set(ours) != set(theirs):
        return
    beyond = []
    for name in sorted(ours):
        single = Result("", "", "", "FAIL")
        compare({name: ours[name]}, {name: theirs[name]}, True, single)
        if single.status != "PASS":
            beyond.append(name)
    if beyond and all(re.search(pattern, name) for name in beyond):
        result.status = "DIFF (documented)"
        result.notes.append(f"{why}: {', '.join(beyond)}; every other tensor within "
                            "tolerance")


def run_mergekit_yaml(recipe_path: Path, out: Path) -> str | None:
    """One recipe through ``mergekit-yaml``; returns the error line on failure."""
    proc = subprocess.run([str(MERGEKIT), str(recipe_path), str(out), "--quiet",
                           "--random-seed", "0"], capture_output=True, text=True, cwd=ROOT)
    (recipe_path.parent / "mergekit.log").write_text(proc.stdout + proc.stderr)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def run_mergekit_all(jobs: list[tuple[str, Path]], family_dir: Path) -> dict[str, str | None]:
    """All recipes of a family in one ``mergekit-multi`` process (mergekit's own CLI for
    several named recipes; it saves one import of torch+mergekit per recipe), falling back
    to one ``mergekit-yaml`` per recipe whose output is missing."""
    outputs = family_dir / "mergekit"
    shutil.rmtree(outputs, ignore_errors=True)
    docs = []
    for name, recipe_path in jobs:
        docs.append({"name": name, **yaml.safe_load(recipe_path.read_text())})
    multi = family_dir / "multi.yaml"
    multi.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    proc = subprocess.run([str(MERGEKIT.parent / "mergekit-multi"), str(multi), "-I",
                           str(outputs), "--quiet", "--random-seed", "0"],
                          capture_output=True, text=True, cwd=ROOT)
    (family_dir / "mergekit-multi.log").write_text(proc.stdout + proc.stderr)
    errors: dict[str, str | None] = {}
    for name, recipe_path in jobs:
        out = outputs / name
        errors[name] = None
        if not (out / "config.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            errors[name] = run_mergekit_yaml(recipe_path, out)
    return errors


def run_merge3(recipe_path: Path, out: Path) -> tuple[str | None, float]:
    """What `merge3 merge RECIPE OUT` does (load_recipe + run_merge), in this process."""
    from merge3.errors import Merge3Error
    from merge3.merging import run_merge
    from merge3.recipe import load_recipe

    start = time.perf_counter()
    try:
        run_merge(load_recipe(recipe_path), out, progress=False, overwrite=True)
    except Merge3Error as err:
        return f"{type(err).__name__}: {err}", time.perf_counter() - start
    except Exception as err:  # a crash is a finding too: record it, keep going
        return f"internal error {type(err).__name__}: {err}", time.perf_counter() - start
    return None, time.perf_counter() - start


def prepare(case: Case, paths: Paths, dtype_mode: str, family_dir: Path) -> Path:
    recipe = case.recipe(paths)
    if dtype_mode == "fp32-math":
        recipe.update(dtype="float32", out_dtype="bfloat16")
    elif dtype_mode == "bf16-math":
        recipe["dtype"] = "bfloat16"
    case_dir = family_dir / f"{case.name}-{dtype_mode}"
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    recipe_path = case_dir / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return recipe_path


def run_family(family: str, paths: Paths, jobs: list[tuple[Case, str]],
               work: Path) -> list[Result]:
    family_dir = work / "runs" / family
    family_dir.mkdir(parents=True, exist_ok=True)
    prepared = [(case, mode, prepare(case, paths, mode, family_dir)) for case, mode in jobs]
    start = time.perf_counter()
    mk_errors = run_mergekit_all([(f"{c.name}-{m}", p) for c, m, p in prepared], family_dir)
    mk_seconds = time.perf_counter() - start
    results = []
    for case, mode, recipe_path in prepared:
        result = Result(family, case.name, mode, "FAIL")
        err3, result.seconds = run_merge3(recipe_path, recipe_path.parent / "merge3")
        errk = mk_errors[f"{case.name}-{mode}"]
        if err3 or errk:
            result.status = "ERROR"
            if err3:
                result.notes.append(f"merge3 failed: {err3[:200]}")
            if errk:
                result.notes.append(f"mergekit failed: {errk[:200]}")
        else:
            ours = load_all(recipe_path.parent / "merge3")
            theirs = load_all(family_dir / "mergekit" / f"{case.name}-{mode}")
            compare(ours, theirs, case.exact, result)
            if case.expected_diff:
                explain_difference(ours, theirs, case.expected_diff, result)
            if case.distribution:
                compare_distribution(ours, theirs, load_all(Path(paths["base"])), result)
            elif not case.exact:
                result.notes.append("values not compared (random masks)")
            if result.status == "FAIL" and mode == "bf16-math":
                result.status = "DIFF (bf16 math)"
        results.append(result)
        print(fmt_row(result), flush=True)
    print(f"{family}: mergekit {mk_seconds:.0f} s for {len(jobs)} recipes", flush=True)
    return results


# Random methods whose kernels make the same draws as mergekit's given the same generator
# state: compared tensor by tensor, bit for bit, seeding both right before each tensor.
# (method, experts, parameters); arcee_fusion also on LARGE, where it samples 10^6 entries.
KERNEL_CASES = [
    ("della", 3, {"weight": [1.0, 0.6, 0.9], "density": [0.5, 0.7, 0.4],
                  "epsilon": [0.15, 0.1, 0.2]}),
    ("della_linear", 3, {"weight": [0.6, 0.4, 0.8], "density": [0.5, 0.6, 0.3],
                         "epsilon": [0.15, 0.1, 0.2], "lambda": 1.2}),
    ("arcee_fusion", 1, {}),
]
LARGE = (1001, 1000)  # above arcee_fusion's 10^6-entry sample


def _kernel_inputs(paths: Paths) -> dict[str, list[torch.Tensor]]:
    """Every floating tensor of the family (base first, then the experts), and one large
    synthetic pair (a base and a base + small noise) named ``large``."""
    models = [load_all(Path(paths[k])) for k in ("base", "expert_1", "expert_2", "expert_3")]
    inputs = {n: [m[n].float() for m in models] for n in models[0]
              if models[0][n].is_floating_point()}
    generator = torch.Generator().manual_seed(0)
    large = torch.randn(LARGE, generator=generator)
    inputs["large"] = [large, large + 0.01 * torch.randn(LARGE, generator=generator)]
    return inputs


def run_kernel_draws(family: str, paths: Paths, work: Path) -> list[Result]:
    """The random kernels' draws: merge3's with ``torch.Generator().manual_seed(s)`` against
    mergekit's after ``torch.manual_seed(s)``, on every tensor of the family (s = the
    tensor's position), i.e. wherever mergekit's draw order is known."""
    from merge3.methods import get_method

    inputs = _kernel_inputs(paths)
    cases = {}
    for method, experts, params in KERNEL_CASES:
        for seed, (name, tensors) in enumerate(inputs.items()):
            if name == "large" and method != "arcee_fusion":
                continue
            cases[f"{method}|{name}"] = {
                "method": method, "tensors": tensors[:experts + 1], "has_base": True,
                "parameters": params, "seed": seed, "name": name}
    folder = work / "runs" / family / "kernels"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(cases, folder / "in.pt")
    proc = subprocess.run([str(MERGEKIT.parent / "python"), str(HERE / "mergekit_kernels.py"),
                           str(folder / "in.pt"), str(folder / "out.pt")],
                          capture_output=True, text=True, cwd=ROOT)
    (folder / "mergekit.log").write_text(proc.stdout + proc.stderr)
    theirs = torch.load(folder / "out.pt") if proc.returncode == 0 else {}
    results = []
    for method, _, params in KERNEL_CASES:
        result = Result(family, f"{method}_kernel_same_seed", "native", "FAIL")
        if proc.returncode:
            result.status = "ERROR"
            result.notes.append(f"mergekit failed: {proc.stderr.strip().splitlines()[-1:]}")
            results.append(result)
            continue
        spec = get_method(method)
        per_model = {k: v for k, v in params.items() if k in spec.per_model}
        global_params = {k: v for k, v in params.items() if k not in per_model}
        ours, expected = {}, {}
        for key, case in cases.items():
            if case["method"] != method:
                continue
            base, *tensors = case["tensors"]
            ours[case["name"]] = spec(tensors, base, name=case["name"],
                                      generator=torch.Generator().manual_seed(case["seed"]),
                                      **per_model, **global_params)
            expected[case["name"]] = theirs[key]
        compare(ours, expected, True, result)
        result.notes.append("each tensor's draws from a generator seeded alike in both"
                            + (f"; with a {LARGE[0]}×{LARGE[1]} tensor (sampled quantiles)"
                               if "large" in ours else ""))
        results.append(result)
        print(fmt_row(result), flush=True)
    return results


def build_families(work: Path) -> dict[str, Paths]:
    from merge3.testing.synthetic import build_family

    families = {}
    for arch in ("llama", "gpt2"):
        for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            root = work / "models" / f"{arch}-{dtype_name}"
            if not (root / "expert_3" / "config.json").exists():
                shutil.rmtree(root, ignore_errors=True)
                build_family(root, arch, experts=3, seed=7, dtype=dtype, hidden=64,
                             layers=LAYERS)
            families[f"{arch}-{dtype_name}"] = {
                name: str(root / name) for name in ("base", "expert_1", "expert_2", "expert_3")
            }
    return families


def versions() -> dict[str, str]:
    import merge3

    mk = subprocess.run(
        [str(MERGEKIT.parent / "python"), "-c",
         "import importlib.metadata as m, torch; print(m.version('mergekit'), torch.__version__)"],
        capture_output=True, text=True,
    ).stdout.split()
    cpu = next((line.split(":", 1)[1].strip() for line in
                subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if line.startswith("Model name")), platform.processor())
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "merge3"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"merge3": f"{merge3.__version__} (merge3/ at {commit})",
            "merge3 torch": torch.__version__,
            "mergekit": mk[0] if mk else "?", "mergekit torch": mk[1] if len(mk) > 1 else "?",
            "python": platform.python_version(), "cpu": f"{cpu}, {os.cpu_count()} cores"}


def fmt_row(r: Result) -> str:
    diff_frac = f"{r.differing} / {r.beyond} / {r.numel}" if r.numel else "-"
    compared = bool(r.numel)
    return (f"| {r.family} | {r.case} | {r.dtype_mode} | **{r.status}** | {r.tensors} | "
            f"{f'{r.max_abs:.2e}' if compared else '-'} | "
            f"{f'{r.max_rel:.2e}' if compared else '-'} | {diff_frac} | "
            f"{'; '.join(r.notes)} |")


def write_readme(results: list[Result], info: dict[str, str], command: str) -> None:
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else "<!-- RESULTS -->\n<!-- /RESULTS -->\n"
    lines = [
        "<!-- RESULTS -->",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Machine and versions: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "| family | case | math dtype | result | tensors | max abs diff | max rel diff "
        "| elements differing / beyond tolerance / total | notes |",
        "|---|---|---|---|---|---|---|---|---|",
        *(fmt_row(r) for r in results),
        "",
        f"{sum(r.status == 'PASS' for r in results)} PASS, "
        f"{sum(r.status == 'FAIL' for r in results)} FAIL, "
        f"{sum(r.status == 'ERROR' for r in results)} ERROR, "
        f"{sum(r.status.startswith('DIFF (bf16') for r in results)} DIFF (bf16 math, "
        f"expected: convention 1), "
        f"{sum(r.status == 'DIFF (documented)' for r in results)} DIFF (documented: "
        f"convention 8) of {len(results)} runs.",
        "<!-- /RESULTS -->",
    ]
    head, _, rest = text.partition("<!-- RESULTS -->")
    _, _, tail = rest.partition("<!-- /RESULTS -->\n")
    readme.write_text(head + "\n".join(lines) + "\n" + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "data",
                        help="models and merge outputs (git-ignored)")
    parser.add_argument("--cases", nargs="*", help="run only these cases")
    parser.add_argument("--families", nargs="*", help="e.g. llama-fp32 gpt2-bf16")
    parser.add_argument("--no-readme", action="store_true", help="print, do not write README")
    args = parser.parse_args()
    if not MERGEKIT.exists():
        print(f"{MERGEKIT} is missing: run benchmarks/setup_mergekit.sh first.", file=sys.stderr)
        return 2
    families = build_families(args.work)
    results: list[Result] = []
    for family, paths in families.items():
        if args.families and family not in args.families:
            continue
        arch, dtype_name = family.split("-")
        # bf16 checkpoints: with float32 math (dtype: float32, out_dtype: bfloat16: both
        # tools do the same arithmetic), and for a few cases with `dtype: bfloat16`
        # (mergekit then computes in bfloat16; merge3 always computes in float32).
        jobs = []
        for case in CASES:
            if arch not in case.archs or (args.cases and case.name not in args.cases):
                continue
            if dtype_name == "fp32":
                jobs.append((case, "native"))
                continue
            jobs.append((case, "fp32-math"))
            if arch == "llama" and case.name in BF16_MATH_CASES:
                jobs.append((case, "bf16-math"))
        results += run_family(family, paths, jobs, args.work)
        if family == "llama-fp32" and not args.cases:
            results += run_kernel_draws(family, paths, args.work)
    info = versions()
    print(json.dumps(info))
    if not args.no_readme and not args.cases and not args.families:
        write_readme(results, info,
                     "nice -n 10 .venv/bin/python benchmarks/mergekit_parity/run.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
