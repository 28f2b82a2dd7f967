"""benchmarks/scale/gpu_check.py on its CPU path at a tiny size: what it writes into the
resident model is merge3's merge of the decoded recipe, bit for bit, and the script runs
with torch, transformers and merge3's source alone."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from merge3.executor import StateDict
from merge3.lowrank import LowRankFactors
from merge3.methods import get_method
from search.materialize import Materializer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scale" / "gpu_check.py"
TINY = ["--hidden", "32", "--layers", "2", "--intermediate", "64", "--heads", "4",
        "--vocab", "64", "--rank", "4"]


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script()


@pytest.fixture(scope="module")
def resident():
    shape = gpu_check.LlamaShape(hidden=32, layers=2, intermediate=64, heads=4, kv_heads=2,
                                 vocab=64)
    return gpu_check.setup(shape, torch.device("cpu"), rank=4, experts=3, seed=0)


def _merge3_merge(resident, method: str, genome: dict) -> dict[str, torch.Tensor]:
    """merge_model (through a worker's Materializer) of the decoded recipe, the experts as
    dense state dicts rebuilt from the same factors."""
    base = resident.base
    experts = [StateDict({n: e.get(n, t) for n, t in base.items()}, f"expert {i}")
               for i, e in enumerate(resident.experts)]
    materializer = Materializer(StateDict(dict(base), "base"), experts)
    return materializer.materialize(gpu_check.recipe(method, genome))


@pytest.mark.parametrize("method", ["task_arithmetic", "ties"])
def test_resident_parameters_are_merge3s_merge_of_the_decoded_recipe(resident, method):
    first, second = gpu_check.candidates(method, 2, len(resident.experts), seed=5)
    kernel = get_method(method)
    model = resident.model
    # two candidates in a row: the second overwrites every tensor the first wrote
    gpu_check.materialize(kernel, first, model, resident.base, resident.experts)
    gpu_check.materialize(kernel, second, model, resident.base, resident.experts)
    expected = _merge3_merge(resident, method, second)
    params = dict(model.named_parameters())
    assert set(params) == set(expected)
    differ = [n for n, p in params.items() if not torch.equal(p, expected[n])]
    assert differ == []
    assert all(p.dtype == torch.bfloat16 for p in params.values())
    changed = [n for n, p in params.items() if not torch.equal(p, resident.base[n])]
    assert len(changed) == len(params)  # every tensor moved off the base
    first_merge = _merge3_merge(resident, method, first)
    assert any(not torch.equal(first_merge[n], expected[n]) for n in expected)


def test_a_factor_expert_rebuilds_as_merge3_lowrank_does(resident):
    name = "model.layers.1.mlp.down_proj.weight"
    expert = resident.experts[2]
    u, s, vh = expert.factors[name]
    base = resident.base[name]
    want = (base.float() + LowRankFactors(u, s, vh).delta()).to(base.dtype)  # LowRankExpert.get
    assert torch.equal(expert.get(name, base), want)
    assert u.shape == (32, 4) and vh.shape == (4, 64)
    tau = expert.get(name, base).float() - base.float()
    rms = float(tau.pow(2).mean().sqrt())
    assert 5e-4 < rms < 8e-3  # about the 2e-3 asked for (bf16 rounding of the expert)
    norms = "model.layers.0.input_layernorm.weight"
    assert name not in expert.kept and norms in expert.kept and norms not in expert.factors


def test_cpu_path_runs_without_pydantic_and_reports_positive_numbers(tmp_path):
    out = tmp_path / "report.json"
    argv = [str(SCRIPT), "--device", "cpu", *TINY, "--candidates", "3", "--warmup", "1",
            "--threads", "1", "--json", str(out)]
    # the GPU machine has torch + transformers (and scipy) only: block what merge3's recipes
    # (pydantic) and the search (Ray, MLflow, vLLM, Optuna) need
    blocked = ["pydantic", "ray", "mlflow", "vllm", "optuna"]
    code = (f"import sys, runpy\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"sys.argv = {argv!r}\nrunpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["memory_cap_gib"] is None
    assert report["params"] == 2 * 64 * 32 + 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32
    assert [row["method"] for row in report["methods"]] == ["task_arithmetic", "ties"]
    for row in report["methods"]:
        assert row["timed"] == 3 and "error" not in row
        assert 0 < row["ms_min"] <= row["ms_median"] <= row["ms_max"] < 60_000
        assert math.isfinite(row["peak_host_rss_gib"]) and 0.05 < row["peak_host_rss_gib"] < 8
        assert row["peak_device_gib"] is None
    assert "| ties | 3 (+1 warm-up) |" in done.stdout
    assert "peak_reserved_gib" not in report["methods"][0]  # CUDA-only columns
