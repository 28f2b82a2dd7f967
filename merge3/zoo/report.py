"""``merge3 zoo report``: accuracy of the base, the experts and the merges on every task.

Read entirely from a built zoo (``population.json`` and the evaluation logs under
``responses/``). Each merge method's coefficient is the one with the best mean
validation accuracy over the tasks. Normalised accuracy is merge ÷ expert on each task
(Ilharco et al.'s normalised accuracy). Intervals are 95% paired-bootstrap intervals of
a method's mean test accuracy minus task arithmetic's: test items are resampled within
each task, the same draw for both models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merge3.eval_logs import read_log

__all__ = ["compute_report", "format_report", "paired_bootstrap", "load_report"]

REFERENCE = "task arithmetic"


def paired_bootstrap(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *, resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean over tasks of (a − b) accuracy and its 95% percentile interval.

    ``a[task]`` and ``b[task]`` are 0/1 score arrays over the same items in the same order.
    """
    rng = np.random.default_rng(seed)
    tasks = sorted(a)
    diffs = np.zeros(resamples)
    point = float(np.mean([a[t].mean() - b[t].mean() for t in tasks]))
    for task in tasks:
        delta = a[task] - b[task]
        draws = rng.integers(0, len(delta), size=(resamples, len(delta)))
        diffs += delta[draws].mean(1)
    diffs /= len(tasks)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return point, float(low), float(high)


def _scores(zoo_dir: Path, model: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
    log = read_log(zoo_dir / "responses" / model)
    return {t: np.array([log[t][i] for i in sorted(log[t])]) for t in tasks}


def compute_report(zoo_dir: str | Path) -> dict[str, Any]:
    """The report of the zoo in ``zoo_dir`` as a JSON-ready dict."""
    zoo_dir = Path(zoo_dir)
    population = json.loads((zoo_dir / "population.json").read_text())
    tasks: list[str] = population["tasks"]
    members = {m["name"]: m for m in population["members"]}

    def accuracy(model: str) -> dict[str, float]:
        scores = _scores(zoo_dir, model, tasks)
        return {t: float(scores[t].mean()) for t in tasks}

    rows: dict[str, dict[str, float]] = {"base (linear probes)": accuracy("base")}
    for task in tasks:
        rows[f"expert: {task}"] = accuracy(f"expert-{task}")
    expert_own = {t: rows[f"expert: {t}"][t] for t in tasks}
    rows["experts, each on its own task"] = dict(expert_own)

    chosen: dict[str, dict[str, Any]] = {}
    for m in members.values():
        label = m.get("method_label")
        if not label:
            continue
        val = float(np.mean(list(m["validation"].values())))
        if label not in chosen or val > chosen[label]["validation_mean"]:
            chosen[label] = {"model": m["name"], "coefficient": m["coefficient"],
                             "validation_mean": val, "method": m["recipe"]["merge_method"]}
    ordered = [label for label in ("averaging", REFERENCE, "TIES", "TSV-M", "Iso-C", "Iso-CTS")
               if label in chosen]
    reference_scores = (_scores(zoo_dir, chosen[REFERENCE]["model"], tasks)
                        if REFERENCE in chosen else None)
    merges = {}
    for label in ordered:
        model = chosen[label]["model"]
        acc = accuracy(model)
        scores = _scores(zoo_dir, model, tasks)
        entry = {
            **chosen[label],
            "accuracy": acc,
            "mean": float(np.mean(list(acc.values()))),
            "normalized": {t: acc[t] / expert_own[t] if expert_own[t] else 0.0 for t in tasks},
        }
        entry["normalized_mean"] = float(np.mean(list(entry["normalized"].values())))
        if reference_scores is not None and label != REFERENCE:
            point, low, high = paired_bootstrap(scores, reference_scores)
            entry["vs_task_arithmetic"] = {"difference": point, "low": low, "high": high}
        merges[label] = entry
    for name, row in rows.items():
        row_mean = float(np.mean([row[t] for t in tasks]))
        rows[name] = {**row, "mean": row_mean}
    base = rows["base (linear probes)"]
    # The zoo's two requirements, with intervals: each expert above the probe-only base on
    # its task, and the best merge (by mean test accuracy) below the experts on average.
    base_scores = _scores(zoo_dir, "base", tasks)
    own = {t: _scores(zoo_dir, f"expert-{t}", [t])[t] for t in tasks}
    expert_vs_base = {}
    for t in tasks:
        point, low, high = paired_bootstrap({t: own[t]}, {t: base_scores[t]})
        expert_vs_base[t] = {"difference": point, "low": low, "high": high}
    best_vs_experts = None
    if merges:
        best = max(merges, key=lambda label: merges[label]["mean"])
        point, low, high = paired_bootstrap(_scores(zoo_dir, merges[best]["model"], tasks), own)
        best_vs_experts = {"merge": best, "difference": point, "low": low, "high": high}
    return {
        "zoo": str(zoo_dir),
        "size": population.get("size"),
        "tasks": tasks,
        "n_test": {t: int(len(_scores(zoo_dir, "base", [t])[t])) for t in tasks},
        "models": rows,
        "base_normalized_mean": float(np.mean([base[t] / expert_own[t] for t in tasks])),
        "merges": merges,
        "expert_vs_base": expert_vs_base,
        "best_merge_vs_experts": best_vs_experts,
        "population_size": len(members),
    }


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}"


def format_report(report: Mapping[str, Any]) -> str:
    """Markdown tables: absolute accuracy (%) and normalised accuracy (% of the expert)."""
    tasks = report["tasks"]
    short = [t.replace("_", " ") for t in tasks]
    head = "| model | " + " | ".join(short) + " | mean |"
    rule = "|" + "---|" * (len(tasks) + 2)
    lines = [f"MiniLM zoo ({report['size']}): test accuracy (%), {report['population_size']} "
             f"models in the population; test items per task: "
             + ", ".join(str(report["n_test"][t]) for t in tasks), "", head, rule]
    for name, row in report["models"].items():
        lines.append(f"| {name} | " + " | ".join(_pct(row[t]) for t in tasks)
                     + f" | {_pct(row['mean'])} |")
    for label, m in report["merges"].items():
        coef = "" if m["coefficient"] in (None, 1.0) and label == "averaging" else \
            f" ({m['coefficient']:g})"
        lines.append(f"| merge: {label}{coef} | " + " | ".join(_pct(m["accuracy"][t])
                     for t in tasks) + f" | {_pct(m['mean'])} |")
    lines += ["", "Normalised accuracy (% of each task's expert) and the difference in mean "
              "accuracy vs task arithmetic (points, 95% paired-bootstrap interval):", "",
              "| merge | " + " | ".join(short) + " | mean | Δ vs TA [95% CI] |",
              "|" + "---|" * (len(tasks) + 3)]
    lines.append("| base (linear probes) | " + " | ".join(
        _pct(report["models"]["base (linear probes)"][t]
             / report["models"]["experts, each on its own task"][t]) for t in tasks)
        + f" | {_pct(report['base_normalized_mean'])} | |")
    for label, m in report["merges"].items():
        cmp = m.get("vs_task_arithmetic")
        delta = _interval(cmp) if cmp else "reference"
        lines.append(f"| {label} | " + " | ".join(_pct(m["normalized"][t]) for t in tasks)
                     + f" | {_pct(m['normalized_mean'])} | {delta} |")
    lines.append("")
    lines.append("Coefficients chosen on validation: " + ", ".join(
        f"{label} {m['coefficient']:g}" for label, m in report["merges"].items()
        if label != "averaging"))
    if "expert_vs_base" in report:  # reports written before 2026-12-02 lack it
        lines += ["", "Each expert minus the probe-only base on its own task (points, 95% "
                  "paired-bootstrap interval): " + "; ".join(
                      f"{t} {_interval(c)}" for t, c in report["expert_vs_base"].items())]
        best = report.get("best_merge_vs_experts")
        if best:
            lines.append(f"The best merge ({best['merge']}) minus the experts, mean over tasks: "
                         f"{_interval(best)}")
    return "\n".join(lines) + "\n"


def _interval(cmp: Mapping[str, float]) -> str:
    return (f"{100 * cmp['difference']:+.1f} [{100 * cmp['low']:+.1f}, "
            f"{100 * cmp['high']:+.1f}]")


def load_report(zoo_dir: str | Path) -> dict[str, Any]:
    """The stored ``report.json`` of a zoo, or a fresh computation when it is missing."""
    path = Path(zoo_dir) / "report.json"
    if path.is_file():
        return json.loads(path.read_text())
    return compute_report(zoo_dir)
