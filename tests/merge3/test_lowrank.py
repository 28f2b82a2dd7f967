"""Low-rank (TSV-C) experts: the factorisation's error follows the discarded singular values,
is exact at full rank, and a search worker holding low-rank experts builds exactly the merge
that ``merge3 merge`` builds from the same low-rank experts written as checkpoints."""

from __future__ import annotations

import pytest
import torch

from merge3.checkpoints import Checkpoint
from merge3.errors import RecipeError
from merge3.lowrank import LowRankExpert, factorize, lowrank_bytes, write_expert
from merge3.testing.synthetic import build_family


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("lowrank"), "llama", experts=2, seed=3,
                        hidden=32, layers=2)


def test_error_is_the_discarded_singular_values_and_zero_at_full_rank():
    gen = torch.Generator().manual_seed(0)
    task_vector = torch.randn(40, 24, generator=gen, dtype=torch.float64).float()
    singular = torch.linalg.svdvals(task_vector.double())
    errors = []
    for rank in (1, 4, 12, 24):
        factors = factorize(task_vector, rank)
        assert factors.u.shape == (40, rank) and factors.vh.shape == (rank, 24)
        error = torch.linalg.norm(factors.delta() - task_vector).item()
        # Eckart-Young: the best rank-r error is the norm of the discarded singular values
        assert error == pytest.approx(singular[rank:].norm().item(), abs=2e-4)
        errors.append(error)
    assert errors == sorted(errors, reverse=True) and errors[0] > 1.0
    assert errors[-1] < 1e-4  # full rank: exact up to float32 rounding
    assert factorize(task_vector, 100).s.numel() == 24  # a rank above min(m, n) keeps all


def test_expert_at_full_rank_is_the_expert_and_low_rank_is_smaller(family):
    base, expert = Checkpoint(family["base"]), Checkpoint(family["expert_1"])
    full = LowRankExpert(base, expert, rank=10_000)
    for name in expert.names():
        torch.testing.assert_close(full.get(name), expert.get(name), atol=2e-5, rtol=0)
    small = LowRankExpert(base, expert, rank=2, dtype="bfloat16")
    dense = sum(expert.info(n).nbytes for n in expert.names())
    matrices = [n for n in expert.names() if len(expert.info(n).shape) == 2]
    kept = sum(expert.info(n).nbytes for n in expert.names() if n not in matrices)
    assert small.nbytes == kept + sum(lowrank_bytes(expert.info(n).shape, 2, 2)
                                      for n in matrices)
    assert small.nbytes < dense / 4
    norm = next(n for n in expert.names() if "norm" in n)
    assert torch.equal(small.get(norm), expert.get(norm))  # 1-D tensors kept as they are
    weight = matrices[-1]
    task_vector = expert.get(weight) - base.get(weight)
    rebuilt = small.get(weight) - base.get(weight)
    # rank 2 of a rank-8-plus-noise task vector: close, not equal
    relative = (torch.linalg.norm(rebuilt - task_vector) / torch.linalg.norm(task_vector)).item()
    assert 0.05 < relative < 0.95


def test_bad_rank_and_dtype_are_refused(family):
    base, expert = Checkpoint(family["base"]), Checkpoint(family["expert_1"])
    with pytest.raises(RecipeError, match="rank >= 1"):
        LowRankExpert(base, expert, rank=0)
    with pytest.raises(RecipeError, match="float16"):
        LowRankExpert(base, expert, rank=4, dtype="float16")


def test_config_schema_refuses_a_lowrank_without_rank_and_unknown_keys():
    from search.config import ExpertStorageSpec, parse_config

    assert ExpertStorageSpec().kind == "files"
    minimal = {"experts": {"a": "x"}, "genome": {}, "tasks": {"t": "t.yaml"},
               "fitness": {"estimator": "full"}}
    spec = parse_config({**minimal, "expert_storage": {"kind": "lowrank", "rank": 8}})
    assert spec.expert_storage.rank == 8 and spec.expert_storage.dtype == "float32"
    with pytest.raises(RecipeError, match="needs a rank"):
        parse_config({**minimal, "expert_storage": {"kind": "lowrank"}})
    with pytest.raises(RecipeError, match="unknown key 'expert_storage.rnak'.*rank"):
        parse_config({**minimal, "expert_storage": {"kind": "lowrank", "rnak": 8}})


@pytest.mark.parametrize("method", ["task_arithmetic", "ties"])
def test_worker_with_lowrank_experts_equals_merge_of_the_same_experts(family, tmp_path, method):
    from merge3.merging import run_merge
    from merge3.recipe import parse_recipe
    from merge3.testing.eval_fixtures import build_tasks
    from search.config import ExpertStorageSpec
    from search.workers import CandidateWorker, WorkerSpec

    tasks = build_tasks(tmp_path / "tasks", n=4)
    storage = ExpertStorageSpec(kind="lowrank", rank=3)
    spec = WorkerSpec(str(family["base"]),
                      {"e1": str(family["expert_1"]), "e2": str(family["expert_2"])},
                      {"arith_mc": str(tasks["arith_mc"])}, expert_storage=storage)
    worker = CandidateWorker(spec)
    recipe = {"merge_method": method, "base_model": str(family["base"]),
              "models": [{"model": str(family["expert_1"]), "parameters": {"weight": 0.7}},
                         {"model": str(family["expert_2"]), "parameters": {"weight": 0.5}}],
              "parameters": {"density": 0.5} if method == "ties" else {}}
    result = worker.evaluate(0, recipe, {"arith_mc": None})
    assert result.error is None and len(result.responses["arith_mc"]) == 4

    # the same low-rank experts as checkpoints, merged by merge3 merge's code path
    base = Checkpoint(family["base"])
    written = {}
    for key in ("expert_1", "expert_2"):
        expert = LowRankExpert(base, Checkpoint(family[key]), rank=3)
        written[key] = write_expert(expert, tmp_path / f"lowrank_{key}", copy_from=family[key])
    lowrank_recipe = dict(recipe, models=[
        dict(entry, model=str(written[key])) for entry, key in
        zip(recipe["models"], ("expert_1", "expert_2"))])
    merged = Checkpoint(run_merge(parse_recipe(lowrank_recipe), tmp_path / "merged",
                                  progress=False))
    resident = worker.evaluator.model.state_dict()
    compared = 0
    for name in merged.names():
        if name in resident:
            assert torch.equal(resident[name], merged.get(name)), name
            compared += 1
    assert compared >= len(merged.names()) - 1
    # and it differs from the merge of the full experts (rank 3 loses something)
    full = Checkpoint(run_merge(parse_recipe(recipe), tmp_path / "merged_full", progress=False))
    name = next(n for n in full.names() if n.endswith("mlp.down_proj.weight"))
    assert not torch.equal(full.get(name), merged.get(name))
