"""The data-free methods of issue #17 on the zoo: WUDI, MagMax, CART, PCB, SVC after task
arithmetic / TIES / WUDI, TIES with FusionBench's whole-model trim, and Iso-CTS with the
authors' rounding of its subspace split (the zoo's own Iso-CTS row predates that fix).

Each method's coefficient is chosen on validation over a grid, as the zoo report does for
its methods (ties go to the smaller coefficient); the other parameters are the authors'
defaults (WUDI 300 Adam steps at lr 1e-5, CART rank ratio 0.12, PCB ratio 0.1, SVC α 0.1)
or the zoo's choices for the method they wrap (TIES density 0.2, disjoint mean). One
``MergeCache`` per method keeps what the coefficient does not change (TIES's and PCB's
whole-model pass). WUDI applies λ after solving, θ_0 + λ·τ_WUDI, so it is solved once
and scaled (equal to a merge at each λ up to float rounding).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from merge3.executor import MergeCache, StateDict, count_layers, merge_job, merge_model
from merge3.zoo.merges import COEFFICIENT_GRIDS, MergeSpec

# label: (method, searched parameter, grid, fixed globals, fixed per-model values)
DATAFREE: dict[str, tuple[str, str, tuple[float, ...], dict[str, Any], dict[str, float]]] = {
    "Iso-CTS, authors' rounding": ("iso_cts", "alpha", COEFFICIENT_GRIDS["Iso-CTS"], {}, {}),
    "TIES, whole-model trim": ("ties", "lambda", COEFFICIENT_GRIDS["TIES"],
                               {"normalize": True, "trim_scope": "model"}, {"density": 0.2}),
    "MagMax": ("magmax", "lambda", (0.25, 0.5, 0.75, 1.0), {}, {}),
    "WUDI": ("wudi", "lambda", (0.5, 0.75, 1.0), {}, {}),
    "CART": ("cart", "lambda", (0.5, 1.0, 1.5, 2.0), {"rank_ratio": 0.12}, {}),
    "PCB": ("pcb", "lambda", COEFFICIENT_GRIDS["TIES"], {"pcb_ratio": 0.1}, {}),
    "SVC after task arithmetic": ("svc_task_arithmetic", "lambda", (0.2, 0.35, 0.5, 0.75, 1.0),
                                  {"svc_alpha": 0.1}, {}),
    "SVC after TIES": ("svc_ties", "lambda", COEFFICIENT_GRIDS["TIES"],
                       {"normalize": True, "svc_alpha": 0.1}, {"density": 0.2}),
    "SVC after WUDI": ("svc_wudi", "lambda", (1.0,), {"svc_alpha": 0.1}, {}),
}
SOLVED_ONCE = {"WUDI"}  # θ_0 + λ·(a solution that does not depend on λ)

Scorer = Callable[..., dict[str, np.ndarray]]


def datafree_spec(label: str, tasks: list[str], coefficient: float) -> MergeSpec:
    method, searched, _, fixed, per_model = DATAFREE[label]
    return MergeSpec(method, tuple(tasks), (1.0,) * len(tasks),
                     {**fixed, searched: float(coefficient)}, per_model)


def merge_cached(spec: MergeSpec, base: Mapping[str, torch.Tensor],
                 experts: Mapping[str, Mapping[str, torch.Tensor]],
                 cache: MergeCache) -> dict[str, torch.Tensor]:
    """``merge3.zoo.merges.merge_state`` with a cache kept across the grid."""
    job = merge_job(spec.recipe(), num_layers=count_layers(base))
    inputs = [StateDict(experts[t], f"expert {t}") for t in spec.tasks]
    return dict(merge_model(job, StateDict(base, "base"), inputs, list(base), cache=cache))


def _scaled(base: Mapping[str, torch.Tensor], solved: Mapping[str, torch.Tensor],
            coefficient: float) -> dict[str, torch.Tensor]:
    return {n: base[n] + coefficient * (solved[n] - base[n]) if base[n].is_floating_point()
            else base[n] for n in base}


def run_datafree(model, base, experts, tasks, splits, heads, score_state: Scorer,
                 labels: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every DATAFREE method: validation grid, chosen coefficient, test scores, seconds."""
    out: dict[str, dict[str, Any]] = {}
    for label in labels or list(DATAFREE):
        _, _, grid, _, _ = DATAFREE[label]
        cache = MergeCache()
        start = time.perf_counter()
        solved = None
        if label in SOLVED_ONCE:
            solved = merge_cached(datafree_spec(label, tasks, 1.0), base, experts, cache)
        merge_seconds = time.perf_counter() - start

        def state(coefficient: float, solved=solved, label=label, cache=cache):
            if solved is not None:
                return _scaled(base, solved, coefficient)
            return merge_cached(datafree_spec(label, tasks, coefficient), base, experts, cache)

        values = {}
        for coefficient in grid:
            t0 = time.perf_counter()
            merged = state(coefficient)
            merge_seconds += time.perf_counter() - t0
            if len(grid) == 1:
                values[coefficient] = float("nan")
                chosen_state = merged
                break
            val = score_state(model, merged, splits["validation"], heads)
            values[coefficient] = float(np.mean([v.mean() for v in val.values()]))
            print(f"{label} {coefficient:g}: validation mean {100 * values[coefficient]:.1f}",
                  flush=True)
        best = grid[0] if len(grid) == 1 else max(values, key=lambda c: (values[c], -c))
        if len(grid) > 1:
            chosen_state = state(best)
        test = score_state(model, chosen_state, splits["test"], heads)
        out[label] = {"method": DATAFREE[label][0], "searched": DATAFREE[label][1],
                      "coefficient": best,
                      "parameters": datafree_spec(label, tasks, best).parameters,
                      "per_model": DATAFREE[label][4],
                      "validation_grid": {str(k): v for k, v in values.items()},
                      "merge_seconds": round(merge_seconds, 1),
                      "seconds": round(time.perf_counter() - start, 1), "scores": test}
        print(f"{label} ({best:g}): test mean "
              f"{100 * np.mean([v.mean() for v in test.values()]):.1f} "
              f"({out[label]['seconds']} s)", flush=True)
    return out
