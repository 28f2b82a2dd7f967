"""Run under .venv-vllm/bin/python: score items with the vLLM backend, swap weights, rescore.

Usage: vllm_runner.py MODEL_DIR MERGED.safetensors OUT.json TASK.yaml [TASK.yaml ...]
Writes {"before": [...], "after": [...], "timings": {...}}: per-item results on MODEL_DIR's
weights, then after ``load_weights`` of MERGED in the same resident engine (streamed
tensor by tensor, in 64 KiB chunks, as a search worker streams a candidate).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict


def main(argv: list[str]) -> int:
    model_dir, merged_path, out_path, *task_paths = argv
    from safetensors.torch import load_file

    import evaluators.vllm_backend as backend
    from evaluators.tasks import load_task
    from evaluators.vllm_backend import VLLMEvaluator

    items = [item for p in task_paths for item in load_task(p).items]
    t0 = time.perf_counter()
    evaluator = VLLMEvaluator(model_dir)
    t1 = time.perf_counter()
    before = evaluator.evaluate(items)
    t2 = time.perf_counter()
    # streamed as a search worker does, in chunks far smaller than the model
    merged = load_file(merged_path)
    backend.SWAP_CHUNK_BYTES = 1 << 16
    chunks = sum(1 for _ in backend.chunked(iter(merged.items()), backend.SWAP_CHUNK_BYTES))
    evaluator.load_weights(iter(merged.items()))
    t3 = time.perf_counter()
    after = evaluator.evaluate(items)
    t4 = time.perf_counter()
    evaluator.close()
    timings = {"engine_start_s": t1 - t0, "evaluate_s": t2 - t1, "swap_s": t3 - t2,
               "evaluate_after_swap_s": t4 - t3, "n_items": len(items), "swap_chunks": chunks}
    with open(out_path, "w") as f:
        json.dump({"before": [asdict(r) for r in before], "after": [asdict(r) for r in after],
                   "timings": timings}, f)
    return 0


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    sys.exit(main(sys.argv[1:]))
