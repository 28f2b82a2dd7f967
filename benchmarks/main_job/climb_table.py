"""The sampler comparison of benchmarks/main_job/climb.md, as a table from the demo runs.

Each ``merge3 demo --sampler S --seed N --out OUT`` leaves ``OUT/zoo-demo-tsv*/climb.json``
(search/climb.py): generation 0's best-mean member and the final front's, both scored on
every test item. This prints one markdown row per run::

    .venv/bin/python benchmarks/main_job/climb_table.py runs/sampler
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def rows(out: Path) -> list[str]:
    """One markdown row per run directory under ``out`` that holds a climb.json."""
    lines = ["| sampler | seed | gen 0's best: trial, est. → true mean | final best: trial "
             "(gen), est. → true mean | true difference [95% CI] | normalised gen 0 → final "
             "| climbed |", "|---|---|---|---|---|---|---|"]
    for climb_path in sorted(out.glob("*/climb.json")):
        climb = json.loads(climb_path.read_text())
        if "difference" not in climb:  # written before the comparison kept the answers
            continue
        config = yaml.safe_load((climb_path.parent / "config.yaml").read_text())
        strategy = config["strategy"]
        first, final = climb["first"], climb["final"]
        low, high = climb.get("interval95", [float("nan")] * 2)
        lines.append(
            f"| {strategy['sampler']} | {strategy['seed']} "
            f"| {first['trial']}, {100 * first['estimated_mean']:.1f} → "
            f"{100 * first['mean']:.1f} "
            f"| {final['trial']} ({final['generation']}), "
            f"{100 * final['estimated_mean']:.1f} → {100 * final['mean']:.1f} "
            f"| {100 * climb['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] "
            f"| {100 * first['normalised_mean']:.1f} → {100 * final['normalised_mean']:.1f} "
            f"| {'yes' if climb['climbed'] else 'no'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the demo runs' --out directory")
    print("\n".join(rows(parser.parse_args().out)))


if __name__ == "__main__":
    main()
