"""Run under .venv-vllm/bin/python: score items with the vLLM backend, swap weights, rescore.

Usage: vllm_runner.py MODEL_DIR MERGED.safetensors OUT.json TASK.yaml [TASK.yaml ...]
Writes {"before": [...], "after": [...], "timings": {...}}: per-item results on MODEL_DIR's
weights, then after ``load_weights`` of MERGED in the same resident engine.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict


def main(argv: list[str]) -> int:
    model_dir, merged_path, out_path, *task_paths = argv
    from safetensors.torch import load_file

    from evaluators.tasks import load_task
    from evaluators.vllm_backend import VLLMEvaluator

    items = [item for p in task_paths for item in load_task(p).items]
    t0 = time.perf_counter()
    evaluator = VLLMEvaluator(model_dir)
    t1 = time.perf_counter()
    before = evaluator.evaluate(items)
    t2 = time.perf_counter()
    evaluator.load_weights(load_file(merged_path))
    t3 = time.perf_counter()
    after = evaluator.evaluate(items)
    t4 = time.perf_counter()
    evaluator.close()
    timings = {"engine_start_s": t1 - t0, "evaluate_s": t2 - t1, "swap_s": t3 - t2,
               "evaluate_after_swap_s": t4 - t3, "n_items": len(items)}
    with open(out_path, "w") as f:
        json.dump({"before": [asdict(r) for r in before], "after": [asdict(r) for r in after],
                   "timings": timings}, f)
    return 0


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    sys.exit(main(sys.argv[1:]))
