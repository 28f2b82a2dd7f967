"""Share of flagged items (non-positive or near-zero discrimination, irt/flags.py) per bank.

Banks: the zoo's per-task banks as the demo calibrates them (σ(α·θ − β), D = 2, scipy,
seed 0), the zoo's whole population (D chosen on held-out models), and the scikit-learn
population (D chosen). For each: flagged items by reason, items every model answered
alike (not judged), and the empirical check — how many flagged "negative" items also
correlate ≤ 0 with their task's accuracy in the raw responses.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/irt/flag_share.py \
        $MERGE3_HOME/minilm/demo/responses benchmarks/irt/data/sklearn_population.csv
"""

from __future__ import annotations

import sys

import numpy as np

from irt import ItemBank, calibrate, load_responses


def _empirical_negative(bank: ItemBank) -> int:
    """Flagged-negative items whose raw correctness correlates ≤ 0 with task accuracy."""
    tasks = np.array(bank.item_tasks)
    count = 0
    for i, reason in zip(bank.flags.indices, bank.flags.reasons):
        if reason != "negative":
            continue
        cols = np.flatnonzero(tasks == tasks[i])
        accuracy = np.nanmean(bank.responses[:, cols], axis=1)
        y = bank.responses[:, i]
        ok = ~np.isnan(y)
        count += int(np.corrcoef(y[ok], accuracy[ok])[0, 1] <= 0)
    return count


def _row(name: str, bank: ItemBank) -> str:
    f = bank.flags
    negative = f.reasons.count("negative")
    judged = bank.n_items - f.constant
    return (f"| {name} | {bank.responses.shape[0]} × {bank.n_items} | {bank.dims} | "
            f"{f.count} ({100 * f.count / bank.n_items:.1f}%) | {negative} | "
            f"{f.reasons.count('near-zero')} | {f.constant} | "
            f"{100 * f.count / max(judged, 1):.1f}% | {_empirical_negative(bank)} of {negative} |")


def main(zoo: str, sklearn: str) -> None:
    print("| bank | models × items | D | flagged | negative | near-zero | constant "
          "(not judged) | flagged of judged | negative also in raw data |")
    print("|---|---|---|---|---|---|---|---|---|")
    responses = load_responses(zoo)
    for task in responses.tasks():
        cols = np.flatnonzero(np.array(responses.item_tasks) == task)
        bank = calibrate(responses.select_items(cols), model="mirt", dims=2, seed=0)
        print(_row(f"zoo {task}", bank), flush=True)
    print(_row("zoo, all tasks", calibrate(responses, seed=0)), flush=True)
    print(_row("scikit-learn", calibrate(load_responses(sklearn), seed=0)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
