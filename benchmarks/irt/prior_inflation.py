"""Ablation: widen the population prior on abilities (AnchorEstimator(prior_inflation=...)).

The plain IRT estimators underestimate models stronger than the calibration population
because the N(μ, Σ) prior pulls θ̂ back into the population's range. This measures MAE (pp)
at k = 50 (kmeans-correctness anchors, seeds 0–2) for Σ scaled by 1, 2, 4, on the random
split and the strongest split of `merge3 irt validate` (seed 0 calibrations).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/irt/prior_inflation.py \
        benchmarks/irt/data/sklearn_population.csv
"""

from __future__ import annotations

import sys

import numpy as np

from irt import AnchorEstimator, calibrate, load_responses, select_anchors
from irt.validate import split_models


def main(path: str) -> None:
    responses = load_responses(path)
    accuracy = responses.accuracies()
    print("| split | Σ × | p-IRT | gp-IRT | gmp-IRT |\n|---|---|---|---|---|")
    for split in ("random", "strongest"):
        train, test = split_models(accuracy, split, 0.2, 0)
        bank = calibrate(responses.select_models(train), dims=2, seed=0)
        scores = responses.scores[test]
        truth = scores.mean(axis=1)
        for inflation in (1.0, 2.0, 4.0):
            errors: dict[str, list[float]] = {}
            for seed in (0, 1, 2):
                anchors = select_anchors(bank, 50, "kmeans-correctness", seed)
                prepared = AnchorEstimator(bank, anchors, prior_inflation=inflation)
                for name in ("p-irt", "gp-irt", "gmp-irt"):
                    value, _ = prepared.predict(name, scores[:, anchors.indices])
                    errors.setdefault(name, []).append(100 * np.mean(np.abs(value - truth)))
            cells = " | ".join(f"{np.mean(v):.2f}" for v in errors.values())
            print(f"| {split} | {inflation:g} | {cells} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/irt/data/sklearn_population.csv")
