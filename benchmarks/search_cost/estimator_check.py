"""How well each estimator predicts the true accuracy of the searches' front members.

Offline, from what ``run.py`` cached: every front member of every arm and seed was
scored on all test items, so its anchor answers are known for any k and the estimators
can be compared without evaluating a model again. mp-IRT / gmp-IRT are run twice: with
the endpoints the search used (``search.fitness.Fitness`` looks the experts up by their
config names, which are not the zoo bank's model names, so it falls back to the 5 bank
models nearest the candidate) and with the six experts as endpoints (MERGE³'s definition).

Usage: .venv/bin/python benchmarks/search_cost/estimator_check.py --work-dir DIR
(the DIR given to run.py; needs the demo zoo's banks under $MERGE3_HOME).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

ESTIMATORS = ("mean", "p-irt", "gp-irt", "mp-irt", "gmp-irt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--anchors", default="20,50")
    parser.add_argument("--tasks", default="word_order,text_source")
    args = parser.parse_args(argv)
    from merge3.zoo.build import build_zoo
    from search.demo import calibrate_zoo_banks
    from search.fitness import Fitness

    zoo_dir = build_zoo("demo", progress=False)
    banks = calibrate_zoo_banks(zoo_dir, quiet=True)
    tasks = args.tasks.split(",")
    experts = sorted(p.stem for p in (zoo_dir / "tasks").glob("*.yaml"))
    members = [responses for path in sorted(args.work_dir.glob("seed*/full_responses/*.json"))
               for responses in json.loads(path.read_text()).values()]
    truth = np.array([[np.mean(list(m[t].values())) for t in tasks] for m in members])
    print(f"{len(members)} front members × {len(tasks)} tasks "
          f"(mean true accuracy {100 * truth.mean():.1f}%)\n")
    print("| estimator | endpoints | k | MAE (pp) | mean error (pp) |\n|---|---|---|---|---|")
    for estimator in ESTIMATORS:
        modes = ["nearest 5 (as searched)", "the 6 experts"] if "mp" in estimator else ["-"]
        for k in map(int, args.anchors.split(",")):
            for mode in modes:
                fitness = Fitness(tasks, estimator, str(banks), k)
                if mode == "the 6 experts":
                    for task in tasks:
                        rows = {m: i for i, m in enumerate(fitness.banks[task].model_ids)}
                        fitness.endpoints[task] = np.array([[rows[f"expert-{e}"]
                                                             for e in experts]])
                scores = [fitness.score(m) for m in members]
                estimates = np.array([[s[t].estimate for t in tasks] for s in scores])
                error = estimates - truth
                print(f"| {estimator} | {mode} | {k} | {100 * np.abs(error).mean():.2f} | "
                      f"{100 * error.mean():+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
