"""Low-rank (TSV-C) experts: rank vs storage vs the candidate's distance to the full merge,
and the merged model's accuracy, on a built zoo (real MiniLM experts fine-tuned by
``merge3 zoo build --size SIZE``; default the demo zoo: 6 experts).

For each rank, both experts are held as :class:`merge3.lowrank.LowRankExpert` (float32
factors) and a search worker's candidate is streamed exactly as search/workers.py does
(``Materializer`` over ``expert_sources``) for task arithmetic and TIES; the distance is
‖θ_lowrank − θ_full‖ / ‖θ_full − θ_0‖ over every tensor (relative to the full merge's own
task vector), accuracy is the merged encoder's on the first ``--items`` items of each zoo
task, scored with each task's expert head as a search scores it.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/scale/lowrank.py --items 200
    # writes lowrank_results.json and lowrank.md beside this file
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RANKS = (None, 1, 4, 16, 64)  # None: the experts' files (no compression), the reference
RECIPES = {"task_arithmetic": {"lambda": 1.0}, "ties": {"density": 0.5, "lambda": 1.0}}


def _recipe(method: str, base: str, experts: dict[str, str]) -> dict:
    return {"merge_method": method, "base_model": base, "parameters": RECIPES[method],
            "models": [{"model": p, "parameters": {"weight": 1.0 / len(experts)}}
                       for p in experts.values()]}


def run(items: int, size: str) -> dict:
    import torch

    from evaluators.backends import make_evaluator
    from evaluators.tasks import load_task
    from merge3 import zoo
    from merge3.checkpoints import Checkpoint
    from search.config import ExpertStorageSpec
    from search.materialize import Materializer, expert_sources
    from search.workers import expert_heads

    torch.set_num_threads(1)
    base = str(zoo.resolve(f"minilm/base@{size}"))
    task_dir = Path(base).parents[1] / "tasks"  # the zoo's own task files
    tasks = {p.stem: str(p) for p in sorted(task_dir.glob("*.yaml"))}
    experts = {t: str(zoo.resolve(f"minilm/expert/{t}@{size}")) for t in tasks}
    dense = sum(Checkpoint(p).info(n).nbytes for p in experts.values()
                for n in Checkpoint(p).names())
    evaluator = make_evaluator("hf", base, device="cpu", dtype="float32",
                               heads_from=expert_heads(experts, tasks))
    pools = {t: load_task(p).items[:items] for t, p in tasks.items()}
    base_ckpt = Checkpoint(base)
    base_state = {n: base_ckpt.get(n).float() for n in base_ckpt.names()}
    full: dict[str, dict] = {}
    rows = []
    for rank in RANKS:
        start = time.perf_counter()
        storage = (ExpertStorageSpec() if rank is None
                   else ExpertStorageSpec(kind="lowrank", rank=rank, dtype="float32"))
        sources = expert_sources(base_ckpt, list(experts.values()), storage)
        setup = time.perf_counter() - start
        stored = dense if rank is None else sum(s.nbytes for s in sources)
        materializer = Materializer(base_ckpt, sources, num_layers=base_ckpt.num_layers())
        for method in RECIPES:
            merged = materializer.materialize(_recipe(method, base, experts))
            if rank is None:
                full[method] = merged
            reference = full.get(method)
            distance = None
            if reference is not None:
                num = sum(float((merged[n].float() - reference[n].float()).norm() ** 2)
                          for n in merged)
                den = sum(float((reference[n].float() - base_state[n]).norm() ** 2)
                          for n in merged)
                distance = (num / den) ** 0.5
            evaluator.load_weights(merged)
            accuracy = {t: sum(r.score for r in evaluator.evaluate(pool)) / len(pool)
                        for t, pool in pools.items()}
            rows.append({"rank": rank, "method": method, "stored_bytes": stored,
                         "stored_fraction": stored / dense, "distance": distance,
                         "accuracy": accuracy, "setup_s": setup})
            print(json.dumps(rows[-1]), flush=True)
    return {"dense_bytes": dense, "items": items, "zoo": size, "tasks": list(tasks),
            "experts": len(experts), "rows": rows}


def table(record: dict) -> str:
    tasks = record["tasks"]
    lines = [f"| rank | stored ({record['experts']} experts) | ÷ dense | method "
             "| ‖θ−θ_full‖ / ‖θ_full−θ_0‖ | " + " | ".join(tasks) + " | mean |",
             "|---|---|---|---|---|" + "---|" * (len(tasks) + 1)]
    ordered = sorted(record["rows"], key=lambda r: (r["method"], r["rank"] or 10**9))
    for r in ordered:
        distance = "0 (reference)" if r["rank"] is None else f"{r['distance']:.3f}"
        accuracy = [r["accuracy"][t] for t in tasks]
        lines.append(f"| {r['rank'] or 'files (full)'} | {r['stored_bytes'] / 2**20:.1f} MiB | "
                     f"{r['stored_fraction']:.3f} | {r['method']} | {distance} | "
                     + " | ".join(f"{100 * a:.1f}" for a in accuracy)
                     + f" | {100 * sum(accuracy) / len(accuracy):.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--size", default="demo", help="the zoo (merge3 zoo build --size)")
    parser.add_argument("--out", type=Path, default=HERE / "lowrank_results.json")
    args = parser.parse_args()
    record = run(args.items, args.size)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    text = table(record)
    args.out.with_name("lowrank.md").write_text(
        f"# Low-rank experts: rank vs storage vs distance vs accuracy ({args.size} zoo)\n\n"
        f"`OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/scale/lowrank.py "
        f"--items {args.items} --size {args.size}`; accuracy % on the first {args.items} "
        "test items of each task (each task's expert head), equal weights 1/N.\n\n"
        + text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
