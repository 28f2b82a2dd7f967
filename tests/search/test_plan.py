"""``merge3 plan``: shapes read from headers, Llama sizes, what fits where, and ``merge3
search`` refusing workers that cannot fit before anything starts."""

from __future__ import annotations

import pytest
import torch
import yaml

from merge3.cli import main
from merge3.errors import RecipeError
from merge3.testing.eval_fixtures import build_tasks
from merge3.testing.synthetic import build_family
from search.config import parse_config
from search.plan import GIB, Machine, ModelShape, parse_memory, plan_config, plan_worker


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    family = build_family(root, "llama", experts=2, seed=5, hidden=32, layers=2,
                          dtype=torch.bfloat16)
    tasks = build_tasks(root / "tasks", n=4)
    config = {"name": "plan-test", "base_model": str(family["base"]),
              "experts": {"a": str(family["expert_1"]), "b": str(family["expert_2"])},
              "method": "task_arithmetic",
              "genome": {"weight": {"per": "model", "low": 0.0, "high": 1.0}},
              "tasks": {"arith_mc": str(tasks["arith_mc"])},
              "fitness": {"estimator": "full"}, "evaluation": {"device": "cpu"},
              "workers": {"count": 1}}
    return {"root": root, "family": family, "config": config}


def test_shape_from_headers_counts_what_the_model_has(setting):
    from transformers import AutoModelForCausalLM

    shape = ModelShape.from_checkpoint(setting["family"]["base"])
    model = AutoModelForCausalLM.from_pretrained(setting["family"]["base"])
    assert shape.params == sum(t.numel() for t in model.state_dict().values())
    assert shape.nbytes == 2 * shape.params  # bf16 on disk
    assert shape.largest == max(t.numel() for t in model.state_dict().values())


def test_llama_sizes_have_the_published_parameter_counts():
    assert ModelShape.llama("7B").params == 6_738_415_616  # Llama-2-7B
    assert ModelShape.llama("13b").params == 13_015_864_320  # Llama-2-13B
    assert ModelShape.llama("70B").params == 68_976_648_192  # Llama-2-70B
    with pytest.raises(RecipeError, match="7B"):
        ModelShape.llama("8B")


def test_sizes_parse_as_gib_and_bad_ones_are_refused():
    assert parse_memory("24GB", "--gpu") == 24 * GIB
    assert parse_memory("512MiB", "--gpu") == 512 * 2**20
    with pytest.raises(RecipeError, match="--gpu.*'lots'"):
        parse_memory("lots", "--gpu")


def test_what_fits_a_24gb_gpu_and_the_fixes_named():
    machine = Machine(24 * GIB, 32 * GIB, "4090 box, 32 GB RAM")
    seven = ModelShape.llama("7B")
    common = {"experts": 3, "method": "ties", "machine": machine, "device": "cuda",
              "batch_size": 8}
    fp32 = plan_worker(seven, eval_dtype="float32", **common)
    assert not fp32.fits and any("bfloat16" in fix for fix in fp32.fixes)
    files = plan_worker(seven, eval_dtype="bfloat16", **common)
    # the device fits bf16 weights, but the host cannot cache base + 3 experts' files
    assert files.device_peak < 24 * GIB
    assert not files.fits and any("lowrank" in fix for fix in files.fixes)
    lowrank = plan_worker(seven, eval_dtype="bfloat16", storage="lowrank", rank=16,
                          factor_dtype="bfloat16", **common)
    assert lowrank.fits, lowrank.problems
    expected = 3 * sum(16 * (s[0] + s[1] + 1) * 2 if len(s) == 2 else s[0] * 2
                       for s, _ in seven.tensors)
    assert next(v for k, v in lowrank.host.items() if k.startswith("experts")) == expected
    assert lowrank.page_cache == seven.nbytes < files.page_cache
    seventy = plan_worker(ModelShape.llama("70B"), eval_dtype="bfloat16", storage="lowrank",
                          rank=16, **common)
    assert not seventy.fits and "device" in seventy.problems[0]


def test_vllm_claims_its_share_of_the_gpu():
    machine = Machine(24 * GIB, 256 * GIB)
    plan = plan_worker(ModelShape.llama("7B"), experts=2, method="task_arithmetic",
                       eval_dtype="bfloat16", backend="vllm", machine=machine)
    assert plan.device_peak == int(0.9 * 24 * GIB) and plan.fits
    big = plan_worker(ModelShape.llama("13B"), experts=2, method="task_arithmetic",
                      eval_dtype="float32", backend="vllm", machine=machine)
    assert not big.fits and "KV cache" in big.problems[0]


def test_cli_prints_the_plan_and_exits_3_when_it_does_not_fit(setting, tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(setting["config"]))
    assert main(["plan", str(path), "--gpu", "none", "--host-ram", "16GB"]) == 0
    out = capsys.readouterr().out
    shape = ModelShape.from_checkpoint(setting["family"]["base"])
    assert f"{shape.params / 1e9:.2f}B parameters" in out and "fits: yes" in out
    assert main(["plan", str(path), "--params", "70B", "--gpu", "24GB",
                 "--host-ram", "64GB"]) == 3
    out = capsys.readouterr().out
    assert "fits: NO" in out and "fix:" in out


def test_search_refuses_workers_that_cannot_fit_and_leaves_nothing(setting, tmp_path):
    from search.run import run_search

    config = parse_config({**setting["config"], "workers": {"count": 4000}})
    run_dir = tmp_path / "run"
    with pytest.raises(RecipeError, match="does not fit.*host") as err:
        run_search(config, run_dir, progress=False)
    assert "fewer workers" in err.value.fix and "--no-plan-check" in err.value.fix
    assert not run_dir.exists()
    plan = plan_config(parse_config(setting["config"]),
                       Machine(None, 64 * GIB), base_model=str(setting["family"]["base"]))
    assert plan.fits and plan.workers == 1


def test_the_4090_workstation_config_fits_one_24gb_gpu(capsys):
    from pathlib import Path

    config = Path(__file__).parents[2] / "clusters" / "workstation-4090" / "search.yaml"
    assert main(["plan", str(config), "--params", "7B", "--gpu", "24GB",
                 "--host-ram", "32GB"]) == 0
    out = capsys.readouterr().out
    assert "lowrank r16" in out and "fits: yes" in out
    # the same search with its experts as files wants more host RAM than that
    files = parse_config({**yaml.safe_load(config.read_text()), "expert_storage": {}})
    plan = plan_config(files, Machine(24 * GIB, 32 * GIB), model=ModelShape.llama("7B"))
    assert not plan.fits and "host" in plan.problems[0]
