"""How much of the estimation error is the IRT model's own misfit?

Calibrate on 256 random models, fit each of the 64 held-out models' ability on *all* items,
and compare the predicted accuracy mean_i P_i(θ̂) with the truth: the error left when the
ability is known as well as the data allow (the floor under any anchor-based p-IRT).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/irt/model_floor.py \
        benchmarks/irt/data/sklearn_population.csv
"""

from __future__ import annotations

import sys

import numpy as np

from irt import calibrate, load_responses
from irt.ability import ability_prior, fit_abilities


def main(path: str) -> None:
    responses = load_responses(path)
    order = np.random.default_rng(0).permutation(responses.n_models)
    test, train = order[:64], order[64:]
    for dims in (2, 5, 10):
        bank = calibrate(responses.select_models(train), dims=dims, seed=0)
        scores = responses.scores[test]
        mean, cov = ability_prior(bank.theta)
        theta, _ = fit_abilities(bank.params, scores, mean, cov)
        floor = 100 * np.mean(np.abs(bank.params.prob(theta).mean(1) - scores.mean(1)))
        print(f"D = {dims}: accuracy error with θ from all {responses.n_items} items "
              f"{floor:.2f} pp", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/irt/data/sklearn_population.csv")
