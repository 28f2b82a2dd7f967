"""Measure one search worker's memory and seconds per candidate, for a given expert storage
and evaluation dtype, in a fresh process (the numbers `merge3 plan` is checked against).

Builds what ``search.workers.CandidateWorker`` builds (the resident transformers
evaluator, the base checkpoint, the experts through ``search.materialize.expert_sources``)
on the bf16 Llama of benchmarks/merge_speed, then streams one candidate per method into
the evaluator. Prints one JSON line: RssAnon after setup and at each candidate's peak
(sampled every 20 ms, benchmarks/scale/run.py's Sampler), seconds, bytes of the experts'
storage.

    .venv/bin/python benchmarks/scale/measure_worker.py --storage lowrank --rank 16 \\
        --factor-dtype bfloat16 --eval-dtype bfloat16 --methods task_arithmetic
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from run import DATA, RECIPES, Sampler, _recipe  # noqa: E402  (benchmarks/scale/run.py)


def measure(storage: str, rank: int | None, factor_dtype: str, eval_dtype: str,
            methods: list[str], threads: int, data: Path = DATA) -> dict:
    import torch

    from evaluators.hf import HFCausalLM
    from merge3.checkpoints import Checkpoint
    from search.config import ExpertStorageSpec
    from search.materialize import Materializer, expert_sources

    torch.set_num_threads(threads)
    spec = ExpertStorageSpec(kind=storage, rank=rank, dtype=factor_dtype)
    out: dict = {"storage": storage, "rank": rank, "factor_dtype": factor_dtype,
                 "eval_dtype": eval_dtype, "threads": threads}
    with Sampler() as mem:
        out["start"] = mem.sample()
        import transformers  # noqa: F401  (the imports a worker has)

        out["imports"] = mem.sample()
        start = time.perf_counter()
        evaluator = HFCausalLM(data / "base", device="cpu", dtype=eval_dtype, progress=False)
        out["evaluator"] = mem.sample()
        base = Checkpoint(data / "base")
        experts = expert_sources(base, [str(data / f"expert_{i}") for i in (1, 2)], spec)
        materializer = Materializer(base, experts, num_layers=base.num_layers())
        out["setup_s"] = time.perf_counter() - start
        out["setup_peak"] = mem.peaks()
        out["after_setup"] = mem.sample()
        out["experts_bytes"] = sum(getattr(e, "nbytes", 0) for e in experts)
        out["candidates"] = {}
        for method in methods:
            mem.reset()
            start = time.perf_counter()
            evaluator.load_weights(materializer.stream(_recipe(method)))
            out["candidates"][method] = {"seconds": time.perf_counter() - start,
                                         "peak": mem.peaks()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", choices=("files", "lowrank"), default="files")
    parser.add_argument("--rank", type=int)
    parser.add_argument("--factor-dtype", default="float32")
    parser.add_argument("--eval-dtype", default="float32")
    parser.add_argument("--methods", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.storage, args.rank, args.factor_dtype, args.eval_dtype,
                             args.methods, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
