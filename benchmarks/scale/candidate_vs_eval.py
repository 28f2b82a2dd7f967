"""Seconds to build a candidate vs seconds to score 100 anchor items, on one worker.

Issue #15 asks that materialising a candidate cost < 10% of evaluating it on 100 anchor
items. This is one search worker's loop body on the 258.5M-parameter bf16 Llama family of
benchmarks/merge_speed (base + 2 experts): the resident transformers evaluator
(``evaluators.hf.HFCausalLM``), a ``search.materialize.Materializer`` over the
checkpoints, and per method two candidates with different weights streamed into the
evaluator (``load_weights(materializer.stream(recipe))``). The 100 multiple-choice items
are scored once, after the first candidate (``--eval-each``: after every one), since the
scoring time depends on the model's shape, not its weights. The first candidate of a
method includes the genome-independent work cached for the rest (TSV-M's SVDs, the
unchanged-tensor scan); the second is what a search pays per candidate.

The items are synthetic (the family has random weights: accuracy means nothing here),
sized like a zoo task's anchors: a context of 60 pseudo-words and 4 choices of 8 (the
scored token count is recorded), scored by log-likelihood as lm-evaluation-harness's
multiple choice is.

    nice -n 10 .venv/bin/python benchmarks/merge_speed/build_data.py   # once, 1.55 GB
    .venv/bin/python benchmarks/scale/candidate_vs_eval.py \
        --json benchmarks/scale/candidate_vs_eval.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "merge_speed" / "data"

METHODS = {
    "task_arithmetic": {"lambda": 1.0},
    "ties": {"density": 0.5},
    "tsv_m": {"alpha": 1.0},
}
WEIGHTS = ((0.6, 0.4), (0.3, 0.7))  # candidate 1, candidate 2


def recipe(method: str, weights: tuple[float, float], data: Path) -> dict:
    return {"merge_method": method, "base_model": str(data / "base"),
            "models": [{"model": str(data / f"expert_{i + 1}"), "parameters": {"weight": w}}
                       for i, w in enumerate(weights)],
            "parameters": METHODS[method], "dtype": "bfloat16"}


def anchor_items(count: int, seed: int = 0) -> list:
    """``count`` multiple-choice items: 60-token contexts, 4 choices of 8 tokens."""
    from evaluators.items import Item

    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgk"

    def words(n: int) -> str:  # n pseudo-words; n tokens or a little more
        return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 4)))
                        for _ in range(n))

    return [Item(task="anchors", id=str(i), format="multiple_choice",
                 prompt=words(60), target=rng.randrange(4),
                 choices=tuple(" " + words(8) for _ in range(4)))
            for i in range(count)]


def run(methods: list[str], items_n: int, eval_dtype: str, threads: int, data: Path,
        eval_once: bool = True) -> dict:
    import torch

    from evaluators.hf import HFCausalLM
    from merge3.checkpoints import Checkpoint
    from search.materialize import Materializer

    torch.set_num_threads(threads)
    evaluator = HFCausalLM(data / "base", device="cpu", dtype=eval_dtype, progress=False)
    items = anchor_items(items_n)
    tokens = sum(len(evaluator.tokenizer(i.prompt + c)["input_ids"])
                 for i in items for c in i.choices)
    rows: list[dict] = []
    score: float | None = None
    for method in methods:
        base = Checkpoint(data / "base")
        experts = [Checkpoint(data / f"expert_{i}") for i in (1, 2)]
        materializer = Materializer(base, experts, num_layers=base.num_layers())
        for candidate, weights in enumerate(WEIGHTS, 1):
            start = time.perf_counter()
            evaluator.load_weights(materializer.stream(recipe(method, weights, data)))
            build = time.perf_counter() - start
            if score is None or not eval_once:
                start = time.perf_counter()
                results = evaluator.evaluate(items)
                score = time.perf_counter() - start
                assert len(results) == len(items)
            rows.append({"method": method, "candidate": candidate, "build_s": build,
                         "eval_s": score, "ratio": build / score})
            print(json.dumps(rows[-1]), flush=True)
    return {"items": items_n, "scored_tokens": tokens, "eval_dtype": eval_dtype,
            "threads": threads, "eval_once": eval_once, "rows": rows}


def table(result: dict) -> str:
    lines = ["| method | candidate | build s | score 100 items s | build ÷ score |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        which = "1st (cache cold)" if r["candidate"] == 1 else "2nd (steady)"
        lines.append(f"| {r['method']} | {which} | {r['build_s']:.1f} | {r['eval_s']:.1f} | "
                     f"{100 * r['ratio']:.0f}% |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--eval-dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--eval-each", action="store_true",
                        help="score the items after every candidate (default: once, after "
                        "the first: the time depends on the model's shape, not its weights)")
    args = parser.parse_args()
    if not (args.data / "base").is_dir():
        raise SystemExit(f"no models in {args.data}: run benchmarks/merge_speed/build_data.py")
    result = run(args.methods, args.items, args.eval_dtype, args.threads, args.data,
                 eval_once=not args.eval_each)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    result["machine"] = f"{platform.processor() or platform.machine()}, at {commit}"
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
