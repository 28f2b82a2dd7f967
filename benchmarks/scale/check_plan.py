"""`merge3 plan`'s predicted worker peak vs the RssAnon measured by measure_worker.py.

    .venv/bin/python benchmarks/scale/measure_worker.py --eval-dtype bfloat16 \\
        > benchmarks/scale/measured/files_bf16.json
    .venv/bin/python benchmarks/scale/check_plan.py benchmarks/scale/measured/*.json

The measured process is a worker's body outside Ray and scores nothing, so the plan's
"ray actor runtime" and "evaluation activations" lines are left out of the prediction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from search.plan import GIB, Machine, ModelShape, plan_worker  # noqa: E402

DATA = HERE.parents[0] / "merge_speed" / "data"


def main() -> int:
    model = ModelShape.from_checkpoint(DATA / "base")
    print("| storage | eval dtype | method | predicted GiB | measured peak GiB | error |")
    print("|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        run = json.loads(Path(path).read_text())
        for method, candidate in run["candidates"].items():
            plan = plan_worker(model, experts=2, method=method, eval_dtype=run["eval_dtype"],
                               device="cpu", storage=run["storage"], rank=run["rank"],
                               factor_dtype=run["factor_dtype"], machine=Machine(None, 2**40))
            steady = sum(v for k, v in plan.host.items()
                         if "ray actor" not in k and "activations" not in k
                         and not k.startswith("peak:"))
            working = next(v for k, v in plan.host.items() if "working set" in k)
            predicted = (steady + max(working, plan.setup_transient)) / GIB
            measured = max(candidate["peak"]["anon"], run["setup_peak"]["anon"])
            print(f"| {plan.storage} | {run['eval_dtype']} | {method} | {predicted:.2f} | "
                  f"{measured:.2f} | {(predicted - measured) / measured:+.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
