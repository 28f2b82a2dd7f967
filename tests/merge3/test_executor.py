"""The executor is the one merge loop: `merge3 merge` and a search worker's
materialisation compute the same bits for every registered method."""

from __future__ import annotations

import pytest
import torch

from merge3.checkpoints import Checkpoint
from merge3.executor import MergeCache, StateDict, merge_job, merge_model, merge_tensor
from merge3.merging import run_merge
from merge3.methods import METHODS, get_method, merge_method
from merge3.recipe import parse_recipe
from search.materialize import Materializer

EXPERTS = ("expert_1", "expert_2", "expert_3")


def _recipe(method_name: str, family: dict) -> dict:
    method = get_method(method_name)
    count = min(2 if method.align else 3, method.max_models or 3)  # nuslerp takes 2
    models = []
    for i, key in enumerate(EXPERTS[:count]):
        params = {}
        if "weight" in method.per_model:
            params["weight"] = [0.4 + 0.3 * i, 1.1 - 0.2 * i] if i == 0 else 0.7 + 0.1 * i
        if "density" in method.per_model:
            params["density"] = 0.5 + 0.1 * i
        models.append({"model": str(family[key]), "parameters": params})
    parameters = {}
    if "alpha" in method.global_params:
        parameters["alpha"] = 1.2
    if "t" in method.global_params:
        parameters["t"] = [0.2, 0.7]
    if method.align:
        parameters["max_iter"] = 5
    recipe = {"merge_method": method_name, "models": models, "parameters": parameters,
              "seed": 3}
    if method.base != "unused":
        recipe["base_model"] = str(family["base"])
    return recipe


@pytest.mark.parametrize("method_name", METHODS.names())
def test_merge3_merge_and_a_search_worker_compute_the_same_bits(method_name, llama_family,
                                                                 tmp_path):
    recipe = _recipe(method_name, llama_family)
    on_disk = Checkpoint(run_merge(parse_recipe(recipe), tmp_path / "out", progress=False))
    base = Checkpoint(llama_family["base"]).state_dict()
    count = len(recipe["models"])
    experts = [Checkpoint(llama_family[k]).state_dict() for k in EXPERTS[:count]]
    worker = Materializer(base, experts)
    first = worker.materialize(recipe)
    again = worker.materialize(recipe)  # from the worker's cache this time
    assert set(first) == set(on_disk.names())
    for name in on_disk.names():
        assert torch.equal(first[name], on_disk.get(name)), name
        assert torch.equal(again[name], first[name]), name


def test_bfloat16_inputs_merge_alike_on_disk_and_in_a_worker(gpt2_family, tmp_path):
    recipe = {"merge_method": "tsv_m", "base_model": str(gpt2_family["base"]),
              "models": [{"model": str(gpt2_family[k]), "parameters": {"weight": w}}
                         for k, w in (("expert_1", 0.8), ("expert_2", 1.3))],
              "parameters": {"alpha": 0.9}}
    on_disk = Checkpoint(run_merge(parse_recipe(recipe), tmp_path / "out", progress=False))
    worker = Materializer(Checkpoint(gpt2_family["base"]).state_dict(),
                          [Checkpoint(gpt2_family[k]).state_dict()
                           for k in ("expert_1", "expert_2")])
    merged = worker.materialize(recipe)
    for name in on_disk.names():
        stored = on_disk.get(name)
        assert stored.dtype == torch.bfloat16 or not stored.is_floating_point()
        assert torch.equal(merged[name].to(stored.dtype), stored), name


def test_a_cache_computes_the_precompute_hook_once_per_tensor(llama_family):
    calls: list[str] = []

    def factors(tensors, base, *, name, scale):
        calls.append(name)
        return sum(t - base for t in tensors) * scale

    def hooked(tensors, base, *, weight, precomputed, scale: float = 1.0,
               lam: float = 1.0):
        return base + lam * precomputed

    merge_method("test_hooked2", pretty_name="hooked", reference="test",
                 per_model={"weight": 1.0}, precompute=factors)(hooked)
    try:
        method = get_method("test_hooked2")
        assert method.precompute_params == ("scale",)
        base = Checkpoint(llama_family["base"]).state_dict()
        experts = [StateDict(Checkpoint(llama_family[k]).state_dict(), k) for k in EXPERTS]
        names = [n for n in base if base[n].is_floating_point()]
        cache = MergeCache()
        for lam in (0.5, 2.0):
            recipe = parse_recipe({"merge_method": "test_hooked2", "base_model": "b",
                                   "models": [{"model": k} for k in EXPERTS],
                                   "parameters": {"lam": lam, "scale": 0.5}})
            merged = dict(merge_model(merge_job(recipe), StateDict(base), experts, names,
                                      cache=cache))
            name = "model.layers.0.mlp.up_proj.weight"
            expected = base[name] + lam * 0.5 * sum(e.get(name) - base[name] for e in experts)
            torch.testing.assert_close(merged[name], expected)
        changed = [n for n in names
                   if not all(torch.equal(e.get(n), base[n]) for e in experts)]
        assert sorted(calls) == sorted(changed)  # once per changed tensor, for two merges
    finally:
        METHODS._entries.pop("test_hooked2", None)


def test_merge_tensor_runs_on_the_requested_device_and_dtype():
    method = get_method("task_arithmetic")
    base = torch.zeros(3, dtype=torch.bfloat16)
    merged = merge_tensor(method, "x", base, [torch.ones(3, dtype=torch.bfloat16)],
                          [{"weight": 0.5}], {"lambda": 1.0}, device="cpu",
                          out_dtype=torch.float16)
    assert merged.dtype == torch.float16 and merged.device.type == "cpu"
    assert merged.tolist() == [0.5, 0.5, 0.5]


def test_tensors_no_expert_changed_are_the_bases(llama_family):
    base = Checkpoint(llama_family["base"]).state_dict()
    recipe = parse_recipe({"merge_method": "ties", "base_model": "b",
                           "models": [{"model": "x", "parameters": {"density": 0.3}}]})
    merged = dict(merge_model(merge_job(recipe), StateDict(base), [StateDict(base)],
                              list(base)))
    for name, tensor in base.items():
        assert torch.equal(merged[name], tensor), name
