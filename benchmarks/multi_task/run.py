"""Multi-task merging on the built-in MiniLM zoo: every merge method, consensus and MASS,
the TSV-C compression table, and the spectrum / interference diagnostics.

    MERGE3_HOME=... nice -n 10 .venv/bin/python benchmarks/multi_task/run.py

Reads the demo zoo (``merge3 zoo build``; ``--zoo`` for another). The probe-only base,
the experts and averaging / task arithmetic / TIES / TSV-M / Iso-C / Iso-CTS come from
the zoo's report (``merge3.zoo.report``: coefficients chosen on validation, per-item test
logs of the population). This script adds

- consensus (TALL masks, Wang et al. 2024), λ chosen on validation;
- the data-free methods of issue #17 (``datafree.py``): WUDI, MagMax, CART, PCB, SVC after
  task arithmetic / TIES / WUDI, TIES with the whole-model trim, Iso-CTS with the
  authors' rounding; coefficients chosen on validation;
- MASS (Crisostomi et al. 2025, ``merge3.routing``), routing layer chosen on validation,
  scored with each item's own head and with the paper's label-free head choice; and the
  same two passes with an oracle router (each input to its own task), which is TSV-C of
  its expert at k = ⌊r/T⌋;
- TSV-C (Gargiulo et al. 2025): each expert compressed to a few ranks, storage vs accuracy;
- per-layer effective rank and singular task interference (STI) of the task vectors, before
  and after TSV-M's orthogonalisation, with PNG figures.

Accuracies are on the zoo's test items; normalised accuracy is merge ÷ the task's expert
(the TSV / Iso papers' normalised accuracy); intervals are 95% paired-bootstrap intervals
(``merge3.zoo.report.paired_bootstrap``). Writes ``results.json`` and ``results.md`` and
``*.png`` beside this file.
"""

# ruff: noqa: E402  (thread limits must be set before numpy is imported)
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # a shared CPU: spinning BLAS threads only slow down

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from safetensors.torch import load_file

from evaluators.heads import Head, load_head
from evaluators.items import Item
from evaluators.mass import MassEvaluator
from merge3.analysis import layer_spectra, pairwise_interference
from merge3.analysis.interference import singular_task_interference
from merge3.analysis.plots import plot_effective_rank, plot_interference, plot_spectra
from merge3.eval_logs import read_log
from merge3.methods.tsv import (
    is_svd_target,
    orthogonalize,
    storage_ratio,
    task_singular_vectors,
)
from merge3.routing import MASS, MassConfig, TaskFactors
from merge3.zoo.cache import default_zoo_dir
from merge3.zoo.encoder import encode, features, load_encoder, load_tokenizer
from merge3.zoo.merges import COEFFICIENT_GRIDS, MergeSpec, merge_state, report_spec
from merge3.zoo.report import compute_report, paired_bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datafree import run_datafree  # noqa: I001  (this directory's module)

HERE = Path(__file__).resolve().parent
REFERENCE = "task arithmetic"
NOT_A_MERGE = ("base (linear probes)", "MASS, oracle routing")  # left out of the ranking
CONSENSUS_GRID = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # λ; TALL mask λ_t = 0.4, k = 2
TSV_C_FRACTIONS = (0.01, 0.02, 0.05, 1 / 6, 0.25, 0.5)  # k / r kept per matrix
ROUTING_BLOCKS = (0, 1, 2, 3, 4, 5)  # MASS candidates: each block's MLP input projection
SPECTRUM_LAYER = "encoder.layer.4.intermediate.dense.weight"
# Tasks whose inputs come from different sources (docstring_area shares docstring_kind's
# texts; word_order and text_source mix docstrings, comments and reference sentences).
# Until 2026-12-02 the third was manual_topic (reference sentences), which spelling
# (comments and reference sentences) replaced in the zoo.
SEPARABLE = ("docstring_kind", "exception_type", "spelling")


# -- data ----------------------------------------------------------------------------------
class Split:
    """One split of every task: texts, labels and item ids, concatenated in task order."""

    def __init__(self, zoo: Path, tasks: list[str], split: str, tokenizer) -> None:
        self.tasks, self.slices, self.ids, self.texts, self.labels = tasks, {}, {}, [], []
        for task in tasks:
            rows = datasets.load_from_disk(str(zoo / "items" / task))[split]
            start = len(self.texts)
            self.texts += list(rows["text"])
            self.labels += list(rows["label"])
            self.slices[task] = slice(start, len(self.texts))
            self.ids[task] = list(rows["item_id"])
        self.batches = encode(tokenizer, self.texts)
        self.task_batches = {t: encode(tokenizer, self.texts[s]) for t, s in self.slices.items()}

    def items(self) -> list[Item]:
        """Evaluator items (what MASS is scored through), in the split's order."""
        return [Item(task=t, id=self.ids[t][i], format="classification",
                     prompt=self.texts[s][i], target=self.labels[s][i], head=t)
                for t, s in self.slices.items() for i in range(s.stop - s.start)]

    def ordered(self, task: str, correct: np.ndarray) -> np.ndarray:
        """0/1 scores of one task sorted by item id (the zoo report's order)."""
        order = np.argsort(self.ids[task])
        return np.asarray(correct, dtype=float)[order]


def score_state(model, state, split: Split, heads: dict[str, Head],
                only: str | None = None) -> dict[str, np.ndarray]:
    """Load ``state`` and score ``split`` (or one task of it) with each task's head."""
    model.load_state_dict(state, strict=True)
    out = {}
    if only is not None:
        feats = features(model, split.task_batches[only])
        labels = np.array(split.labels[split.slices[only]])
        pred = (feats @ heads[only].weight.T + heads[only].bias).argmax(1).numpy()
        return {only: split.ordered(only, pred == labels)}
    feats = features(model, split.batches)
    for task, rows in split.slices.items():
        pred = (feats[rows] @ heads[task].weight.T + heads[task].bias).argmax(1).numpy()
        out[task] = split.ordered(task, pred == np.array(split.labels[rows]))
    return out


def logged_scores(zoo: Path, model: str, tasks: list[str]) -> dict[str, np.ndarray]:
    """Per-item test scores of a population member from the zoo's logs (sorted ids)."""
    log = read_log(zoo / "responses" / model)
    return {t: np.array([log[t][i] for i in sorted(log[t])]) for t in tasks}


def summarize(scores: dict[str, np.ndarray], expert: dict[str, float]) -> dict[str, Any]:
    acc = {t: float(v.mean()) for t, v in scores.items()}
    norm = {t: acc[t] / expert[t] for t in acc}
    return {"accuracy": acc, "mean": float(np.mean(list(acc.values()))),
            "normalized": norm, "normalized_mean": float(np.mean(list(norm.values())))}


def mass_scores(evaluator: MassEvaluator, split: Split) -> tuple[dict[str, np.ndarray], Any]:
    results = evaluator.evaluate(split.items())
    by_task: dict[str, list[float]] = {t: [] for t in split.tasks}
    for r in results:
        by_task[r.task].append(r.score)
    return ({t: split.ordered(t, np.array(v)) for t, v in by_task.items()},
            evaluator.last_routing)


def routing_stats(routing, split: Split) -> dict[str, Any]:
    own = [t for t in split.tasks for _ in range(len(split.ids[t]))]
    top1 = routing.top1
    tasks = list(routing.tasks)
    confusion = np.zeros((len(tasks), len(tasks)), dtype=int)
    for truth, chosen in zip(own, top1):
        confusion[tasks.index(truth), tasks.index(chosen)] += 1
    sizes: dict[int, int] = {}
    for s in routing.selections:
        sizes[len(s)] = sizes.get(len(s), 0) + 1
    return {
        "top1_accuracy": float(np.mean([a == b for a, b in zip(own, top1)])),
        "own_task_selected": float(np.mean([t in s for t, s in zip(own, routing.selections)])),
        "own_task_alone": float(np.mean([s == (t,) for t, s in zip(own, routing.selections)])),
        "mean_selected": float(np.mean([len(s) for s in routing.selections])),
        "groups": len(routing.groups()),
        "selected_set_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "top1_confusion": confusion.tolist(),
    }


# -- the pieces ----------------------------------------------------------------------------
def run_consensus(model, base, experts, tasks, splits, heads) -> dict[str, Any]:
    grid = {}
    for lam in CONSENSUS_GRID:
        spec = MergeSpec("consensus", tuple(tasks), (1.0,) * len(tasks), {"lambda": lam, "k": 2},
                         {"mask_lambda": 0.4})
        state = merge_state(spec, base, experts)
        val = score_state(model, state, splits["validation"], heads)
        grid[lam] = float(np.mean([v.mean() for v in val.values()]))
        print(f"consensus λ={lam:g}: validation mean {100 * grid[lam]:.1f}", flush=True)
    best = max(grid, key=lambda k: (grid[k], -k))
    spec = MergeSpec("consensus", tuple(tasks), (1.0,) * len(tasks), {"lambda": best, "k": 2},
                     {"mask_lambda": 0.4})
    test = score_state(model, merge_state(spec, base, experts), splits["test"], heads)
    return {"coefficient": best, "validation_grid": {str(k): v for k, v in grid.items()},
            "scores": test}


def run_mass(zoo: Path, tasks: list[str], splits: dict[str, Split], alpha: float) -> dict:
    experts = {t: zoo / "models" / f"expert-{t}" for t in tasks}
    start = time.perf_counter()
    mass = MASS.from_pretrained(zoo / "models" / "base", experts, MassConfig(alpha=alpha))
    build_seconds = time.perf_counter() - start
    head_dirs = {t: [experts[t]] for t in tasks}
    per_layer = {}
    for block in ROUTING_BLOCKS:
        layered = MASS(mass.model, mass.tokenizer, mass.factors,
                       MassConfig(layer=block, alpha=alpha))
        scores, routing = mass_scores(MassEvaluator(layered, head_dirs), splits["validation"])
        per_layer[block] = {"matrix": layered.router.matrix,
                            "validation_mean": float(np.mean([v.mean() for v in
                                                              scores.values()])),
                            **routing_stats(routing, splits["validation"])}
        print(f"MASS block {block}: validation mean "
              f"{100 * per_layer[block]['validation_mean']:.1f}, routing top-1 "
              f"{100 * per_layer[block]['top1_accuracy']:.1f}", flush=True)
    # Ties go to the later block (the paper routes late: block 10 of a 12-block ViT-B/32).
    best = max(per_layer, key=lambda b: (per_layer[b]["validation_mean"], b))
    chosen = MASS(mass.model, mass.tokenizer, mass.factors, MassConfig(layer=best, alpha=alpha))
    out: dict[str, Any] = {"layer": best, "matrix": chosen.router.matrix, "alpha": alpha,
                           "build_seconds": round(build_seconds, 1),
                           "validation_per_layer": per_layer}
    for heads in ("item", "routed"):
        start = time.perf_counter()
        scores, routing = mass_scores(MassEvaluator(chosen, head_dirs, head_selection=heads),
                                      splits["test"])
        out[heads] = {"scores": scores, "seconds": round(time.perf_counter() - start, 1)}
    out["test_routing"] = routing_stats(routing, splits["test"])
    return out


def compressed(factors: TaskFactors, base, fraction: float) -> tuple[dict, dict]:
    """(stored TSV-C factors, θ_0 + lowrank_k(τ)) of one expert, k = ⌊fraction·r⌋."""
    kept, state = {}, dict(base)
    for name, (f,) in factors.low_rank.items():
        k = max(1, int(fraction * min(base[name].shape)))
        kept.update({f"{name}.U": f.u[:, :k], f"{name}.s": f.s[:k], f"{name}.V": f.v[:, :k]})
        state[name] = base[name] + (f.u[:, :k] * f.s[:k]) @ f.v[:, :k].T
    for name, (delta,) in factors.dense.items():
        kept[name] = delta
        state[name] = base[name] + delta
    return kept, state


def run_tsv_c(model, base, experts, tasks, splits, heads) -> list[dict[str, Any]]:
    """Each expert compressed to its top k triplets per matrix (merge3's ``tsv_c`` with one
    model): one SVD per matrix and task (``TaskFactors`` at the largest k), cut to each k."""
    factors = {t: TaskFactors.from_states(base, {t: experts[t]},
                                          k_fraction=max(TSV_C_FRACTIONS)) for t in tasks}
    rows = []
    for fraction in TSV_C_FRACTIONS:
        accuracy, ratios, ratios_2d, scores = {}, {}, {}, {}
        for task in tasks:
            kept, state = compressed(factors[task], base, fraction)
            scores[task] = score_state(model, state, splits["test"], heads, only=task)[task]
            accuracy[task] = float(scores[task].mean())
            # Stored numbers ÷ the task vector's (tensors the expert left alone: nothing).
            vector = {n: b for n, b in base.items() if b.is_floating_point()}
            ratios[task] = storage_ratio(kept, vector)
            matrices = {n: b for n, b in vector.items() if is_svd_target(n, b)}
            ratios_2d[task] = storage_ratio({k: v for k, v in kept.items()
                                             if k.rpartition(".")[0] in matrices}, matrices)
        k = max(1, int(fraction * 384))
        rows.append({"k_fraction": fraction, "k_of_384": k, "accuracy": accuracy,
                     "storage_ratio": float(np.mean(list(ratios.values()))),
                     "storage_ratio_matrices": float(np.mean(list(ratios_2d.values()))),
                     "scores": scores})
        print(f"TSV-C k={k}: mean own-task accuracy "
              f"{100 * np.mean(list(accuracy.values())):.1f}, storage "
              f"{rows[-1]['storage_ratio']:.3f}", flush=True)
    return rows


def run_separable(zoo, model, base, experts, heads, tokenizer) -> dict[str, Any]:
    """Task arithmetic, TSV-M and MASS on the tasks whose inputs come from different
    sources (docstrings / error messages / reference sentences), coefficients and the
    routing layer chosen on validation as above."""
    tasks = list(SEPARABLE)
    splits = {s: Split(zoo, tasks, s, tokenizer) for s in ("validation", "test")}
    scores: dict[str, dict[str, np.ndarray]] = {}
    chosen: dict[str, float] = {}
    for label in ("task arithmetic", "TSV-M"):
        grid = {}
        for coefficient in COEFFICIENT_GRIDS[label]:
            state = merge_state(report_spec(label, tasks, coefficient), base, experts)
            val = score_state(model, state, splits["validation"], heads)
            grid[coefficient] = float(np.mean([v.mean() for v in val.values()]))
        chosen[label] = max(grid, key=lambda c: (grid[c], -c))
        state = merge_state(report_spec(label, tasks, chosen[label]), base, experts)
        scores[label] = score_state(model, state, splits["test"], heads)
        print(f"separable {label} ({chosen[label]:g}): test mean "
              f"{100 * np.mean([v.mean() for v in scores[label].values()]):.1f}", flush=True)
    mass = run_mass(zoo, tasks, splits, chosen["TSV-M"])
    scores["MASS"] = mass["item"].pop("scores")
    scores["MASS, routed heads (paper)"] = mass["routed"].pop("scores")
    scores["MASS, oracle routing"] = {}
    for task in tasks:
        factors = TaskFactors.from_states(base, {task: experts[task]}, k_fraction=1 / len(tasks))
        _, state = compressed(factors, base, 1 / len(tasks))
        scores["MASS, oracle routing"][task] = score_state(model, state, splits["test"], heads,
                                                           only=task)[task]
    return {"tasks": tasks, "coefficients": chosen, "mass": mass, "scores": scores}


def run_diagnostics(base, experts, tasks) -> dict[str, Any]:
    vectors = {t: {n: (experts[t][n] - b).double() for n, b in base.items()
                   if b.is_floating_point() and is_svd_target(n, b)
                   and not torch.equal(experts[t][n], b)} for t in tasks}
    spectra = {t: layer_spectra(v) for t, v in vectors.items()}
    sti_before, sti_after = {}, {}
    for name in vectors[tasks[0]]:
        k = min(base[name].shape) // len(tasks)
        u, s, v = task_singular_vectors([vectors[t][name] for t in tasks], k)
        sti_before[name] = singular_task_interference(u.numpy(), s.numpy(), v.numpy())
        sti_after[name] = singular_task_interference(orthogonalize(u).numpy(), s.numpy(),
                                                     orthogonalize(v).numpy())
    pairwise = pairwise_interference([vectors[t] for t in tasks], SPECTRUM_LAYER)
    plot_spectra(spectra, SPECTRUM_LAYER, HERE / "spectra_layer4_mlp_in.png")
    plot_effective_rank(spectra, HERE / "effective_rank.png")
    plot_interference(pairwise, tasks, HERE / "sti_pairwise_layer4_mlp_in.png",
                      title="STI, layer 4 MLP input (top ⌊r/2⌋ each)")
    return {
        "effective_rank": {t: {n: sp.effective_rank for n, sp in s.items()}
                           for t, s in spectra.items()},
        "energy_rank_90": {t: {n: sp.energy_rank for n, sp in s.items()}
                           for t, s in spectra.items()},
        "sti_before": sti_before, "sti_after": sti_after,
        "sti_pairwise_" + SPECTRUM_LAYER: pairwise.tolist(),
    }


# -- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=None,
                        help="a built zoo (default: $MERGE3_HOME/minilm/demo)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    zoo = args.zoo or default_zoo_dir("demo")
    if not (zoo / "population.json").is_file():
        print(f"No built zoo in {zoo}: run `merge3 zoo build` (set MERGE3_HOME to use another "
              "cache) or pass --zoo DIR.", file=sys.stderr)
        return 2
    started, load_start = time.perf_counter(), os.getloadavg()
    report = compute_report(zoo)
    tasks: list[str] = report["tasks"]
    tokenizer = load_tokenizer(zoo / "models" / "base")
    splits = {s: Split(zoo, tasks, s, tokenizer) for s in ("validation", "test")}
    heads = {t: load_head(zoo / "models" / f"expert-{t}", t) for t in tasks}
    model = load_encoder(zoo / "models" / "base")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    experts = {t: {k: load_file(str(zoo / "models" / f"expert-{t}" / "model.safetensors"))
                   .get(k, v) for k, v in base.items()} for t in tasks}
    expert_acc = {t: report["models"]["experts, each on its own task"][t] for t in tasks}

    scores: dict[str, dict[str, np.ndarray]] = {}
    coefficients: dict[str, Any] = {}
    scores["base (linear probes)"] = logged_scores(zoo, "base", tasks)
    for label, entry in report["merges"].items():
        scores[label] = logged_scores(zoo, entry["model"], tasks)
        coefficients[label] = entry["coefficient"]
    timings = {}
    t0 = time.perf_counter()
    consensus = run_consensus(model, base, experts, tasks, splits, heads)
    timings["consensus"] = round(time.perf_counter() - t0, 1)
    scores["consensus"] = consensus.pop("scores")
    coefficients["consensus"] = consensus["coefficient"]
    t0 = time.perf_counter()
    datafree = run_datafree(model, base, experts, tasks, splits, heads, score_state)
    timings["data-free methods"] = round(time.perf_counter() - t0, 1)
    for label, entry in datafree.items():
        scores[label] = entry.pop("scores")
        coefficients[label] = entry["coefficient"]
    t0 = time.perf_counter()
    alpha = float(report["merges"]["TSV-M"]["coefficient"])
    mass = run_mass(zoo, tasks, splits, alpha)
    timings["MASS (layer choice + test)"] = round(time.perf_counter() - t0, 1)
    scores["MASS"] = mass["item"].pop("scores")
    scores["MASS, routed heads (paper)"] = mass["routed"].pop("scores")
    t0 = time.perf_counter()
    tsv_c = run_tsv_c(model, base, experts, tasks, splits, heads)
    timings["TSV-C table"] = round(time.perf_counter() - t0, 1)
    oracle = next(r for r in tsv_c if abs(r["k_fraction"] - 1 / len(tasks)) < 1e-9)
    scores["MASS, oracle routing"] = oracle["scores"]
    separable = None
    if set(SEPARABLE) <= set(tasks):
        t0 = time.perf_counter()
        separable = run_separable(zoo, model, base, experts, heads, tokenizer)
        timings["separable subset"] = round(time.perf_counter() - t0, 1)
        sub_scores = separable.pop("scores")
        separable["methods"] = {}
        for label, by_task in sub_scores.items():
            entry = summarize(by_task, expert_acc)
            if label != "TSV-M":
                point, low, high = paired_bootstrap(by_task, sub_scores["TSV-M"],
                                                    resamples=args.resamples)
                entry["vs_tsv_m"] = {"difference": point, "low": low, "high": high}
            separable["methods"][label] = entry
    t0 = time.perf_counter()
    diagnostics = run_diagnostics(base, experts, tasks)
    timings["diagnostics"] = round(time.perf_counter() - t0, 1)

    methods: dict[str, Any] = {}
    for label, by_task in scores.items():
        entry = summarize(by_task, expert_acc)
        if label in coefficients:
            entry["coefficient"] = coefficients[label]
        if label != REFERENCE and label != "base (linear probes)":
            point, low, high = paired_bootstrap(by_task, scores[REFERENCE],
                                                resamples=args.resamples)
            entry["vs_task_arithmetic"] = {"difference": point, "low": low, "high": high}
        methods[label] = entry
    for label in scores:
        if label not in ("TSV-M", "base (linear probes)"):
            point, low, high = paired_bootstrap(scores[label], scores["TSV-M"],
                                                resamples=args.resamples)
            methods[label]["vs_tsv_m"] = {"difference": point, "low": low, "high": high}
    ranking = sorted((m for m in methods if m not in NOT_A_MERGE),
                     key=lambda m: -methods[m]["mean"])
    for label in ranking[1:]:
        point, low, high = paired_bootstrap(scores[label], scores[ranking[0]],
                                            resamples=args.resamples)
        methods[label]["vs_best"] = {"difference": point, "low": low, "high": high}
    for row in tsv_c:
        row.pop("scores")
        row["normalized"] = {t: row["accuracy"][t] / expert_acc[t] for t in tasks}
        row["normalized_mean"] = float(np.mean(list(row["normalized"].values())))
    results = {
        "command": "MERGE3_HOME=... nice -n 10 .venv/bin/python benchmarks/multi_task/run.py",
        "zoo": f"$MERGE3_HOME/minilm/{report['size']}", "size": report["size"], "tasks": tasks,
        "n_test": report["n_test"], "experts": report["models"],
        "methods": methods, "ranking": ranking, "datafree": datafree,
        "consensus": consensus, "mass": mass, "tsv_c": tsv_c,
        "separable_subset": separable,
        "diagnostics": diagnostics, "timings_s": {**timings, "total": round(
            time.perf_counter() - started, 1)},
        "machine": machine(load_start),
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def machine(load_start: tuple[float, ...]) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=HERE, check=False).stdout.strip()
    except OSError:
        commit = ""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load_average_start": [round(x, 1) for x in load_start],
            "load_average_end": [round(x, 1) for x in os.getloadavg()], "merge3_commit": commit}


# -- tables --------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(entry: dict[str, float] | None) -> str:
    if not entry:
        return "reference"
    return (f"{100 * entry['difference']:+.1f} [{100 * entry['low']:+.1f}, "
            f"{100 * entry['high']:+.1f}]")


def markdown(results: dict[str, Any]) -> str:
    tasks = results["tasks"]
    short = [t.replace("_", " ") for t in tasks]
    methods = results["methods"]
    experts = results["experts"]
    lines = [f"Test accuracy (%) on the {results['size']} zoo, "
             f"{', '.join(str(results['n_test'][t]) for t in tasks)} items per task.", "",
             "| model | " + " | ".join(short) + " | mean |", "|---" * (len(tasks) + 2) + "|"]
    for name in [f"expert: {t}" for t in tasks] + ["experts, each on its own task"]:
        row = experts[name]
        lines.append(f"| {name} | " + " | ".join(_pct(row[t]) for t in tasks)
                     + f" | {_pct(row['mean'])} |")
    for label, m in methods.items():
        coef = f" ({m['coefficient']:g})" if m.get("coefficient") not in (None,) and \
            label not in ("averaging",) else ""
        lines.append(f"| {label}{coef} | " + " | ".join(_pct(m["accuracy"][t]) for t in tasks)
                     + f" | **{_pct(m['mean'])}** |")
    lines += ["", "Normalised accuracy (% of each task's expert) and the difference in mean "
              "accuracy from task arithmetic (points, 95% paired-bootstrap interval):", "",
              "| model | " + " | ".join(short) + " | mean | Δ vs TA [95% CI] |",
              "|---" * (len(tasks) + 3) + "|"]
    for label, m in methods.items():
        lines.append(f"| {label} | " + " | ".join(_pct(m["normalized"][t]) for t in tasks)
                     + f" | **{_pct(m['normalized_mean'])}** | "
                     + (_ci(m.get("vs_task_arithmetic")) if label != "base (linear probes)"
                        else "") + " |")
    lines += ["", "MASS vs TSV-M (difference in mean accuracy, points, 95% paired bootstrap): "
              + "; ".join(f"{label} {_ci(methods[label]['vs_tsv_m'])}" for label in
                          ("MASS", "MASS, routed heads (paper)", "MASS, oracle routing")), ""]
    ranking = results["ranking"]
    lines += [f"Ranking of the merges by mean test accuracy (the base and oracle routing left "
              f"out); differences in mean accuracy (points, 95% paired bootstrap) from task "
              f"arithmetic, TSV-M and the first ({ranking[0]}):", "",
              "| rank | model | mean | normalised | Δ vs TA | Δ vs TSV-M | Δ vs first |",
              "|---:|---|---:|---:|---|---|---|"]
    for rank, label in enumerate(ranking, 1):
        m = methods[label]
        lines.append(f"| {rank} | {label} | {_pct(m['mean'])} | {_pct(m['normalized_mean'])} "
                     f"| {_ci(m.get('vs_task_arithmetic'))} | {_ci(m.get('vs_tsv_m'))} | "
                     f"{_ci(m.get('vs_best')) if rank > 1 else 'first'} |")
    lines += ["", "Data-free methods: coefficient chosen on validation (mean accuracy % per "
              "grid point), merge and total seconds:", "",
              "| model | method | fixed parameters | validation grid | chosen | merge s | "
              "total s |", "|---|---|---|---|---:|---:|---:|"]
    for label, entry in results["datafree"].items():
        fixed = {k: v for k, v in entry["parameters"].items() if k != entry["searched"]}
        fixed.update(entry["per_model"])
        grid = ", ".join(f"{k}: {'–' if v != v else _pct(v)}"
                         for k, v in entry["validation_grid"].items())
        lines.append(f"| {label} | `{entry['method']}` | {fixed or '—'} | {grid} | "
                     f"{entry['coefficient']:g} | {entry['merge_seconds']} | "
                     f"{entry['seconds']} |")
    lines.append("")
    mass = results["mass"]
    lines += [f"MASS routing layer chosen on validation: block {mass['layer']} "
              f"(`{mass['matrix']}`), α = {mass['alpha']:g}. Per candidate layer "
              "(validation):", "",
              "| block | mean acc | routing top-1 | own task selected | own task alone | "
              "mean tasks selected | groups |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for block, row in mass["validation_per_layer"].items():
        lines.append(f"| {block} | {_pct(row['validation_mean'])} | "
                     f"{_pct(row['top1_accuracy'])} | {_pct(row['own_task_selected'])} | "
                     f"{_pct(row['own_task_alone'])} | {row['mean_selected']:.2f} | "
                     f"{row['groups']} |")
    test = mass["test_routing"]
    lines += ["", f"Test routing at the chosen layer: top-1 {_pct(test['top1_accuracy'])}%, "
              f"own task among the selected {_pct(test['own_task_selected'])}%, alone "
              f"{_pct(test['own_task_alone'])}%; tasks selected per input "
              f"{test['selected_set_sizes']}. Top-1 confusion (rows: the item's task, "
              "columns: the routed task):", "",
              "| task | " + " | ".join(short) + " |", "|---" * (len(tasks) + 1) + "|"]
    for task, row in zip(short, test["top1_confusion"]):
        lines.append(f"| {task} | " + " | ".join(str(x) for x in row) + " |")
    sep = results.get("separable_subset")
    if sep:
        sub = sep["tasks"]
        lines += ["", f"Tasks with separable inputs ({', '.join(sub)}): task arithmetic and "
                  "TSV-M of these three experts (coefficients chosen on validation: "
                  + ", ".join(f"{k} {v:g}" for k, v in sep["coefficients"].items())
                  + f"), MASS routed at block {sep['mass']['layer']} (chosen on validation). "
                  "Test accuracy %, normalised %, and the difference from TSV-M:", "",
                  "| model | " + " | ".join(t.replace("_", " ") for t in sub)
                  + " | mean | normalised | Δ vs TSV-M [95% CI] |",
                  "|---" * (len(sub) + 4) + "|"]
        for label, m in sep["methods"].items():
            lines.append(f"| {label} | " + " | ".join(_pct(m["accuracy"][t]) for t in sub)
                         + f" | {_pct(m['mean'])} | **{_pct(m['normalized_mean'])}** | "
                         + (_ci(m.get("vs_tsv_m")) if label != "TSV-M" else "reference")
                         + " |")
        routing = sep["mass"]["test_routing"]
        lines += ["", f"Test routing on these three: top-1 {_pct(routing['top1_accuracy'])}%, "
                  f"own task among the selected {_pct(routing['own_task_selected'])}%, alone "
                  f"{_pct(routing['own_task_alone'])}%; confusion "
                  f"{routing['top1_confusion']}."]
    lines += ["", "TSV-C: each expert's task vector compressed to its top k of r = 384 "
              "singular triplets per matrix, scored on its own task (accuracy %, "
              "normalised %). Storage = stored numbers ÷ the task vector's; embeddings, "
              "biases and norms are stored dense (the first ratio), the second counts the "
              "2-D matrices only:", "",
              "| k | storage (all) | storage (matrices) | " + " | ".join(short)
              + " | mean | normalised |", "|---:" * (len(tasks) + 5) + "|"]
    for row in results["tsv_c"]:
        lines.append(f"| {row['k_of_384']} | {row['storage_ratio']:.3f} | "
                     f"{row['storage_ratio_matrices']:.3f} | "
                     + " | ".join(_pct(row["accuracy"][t]) for t in tasks)
                     + f" | {_pct(np.mean(list(row['accuracy'].values())))} | "
                     f"{_pct(row['normalized_mean'])} |")
    diag = results["diagnostics"]
    names = list(diag["sti_before"])
    lines += ["", "Per-layer diagnostics of the six task vectors: mean effective rank "
              "(Roy & Vetterli) and 90%-energy rank over tasks, and STI of all tasks (top "
              "⌊r/6⌋ each) before / after TSV-M's orthogonalisation:", "",
              "| matrix | eff. rank | 90% energy rank | STI before | STI after |",
              "|---|---:|---:|---:|---:|"]
    for name in names:
        erank = np.mean([diag["effective_rank"][t][name] for t in tasks])
        energy = np.mean([diag["energy_rank_90"][t][name] for t in tasks])
        lines.append(f"| {name.removeprefix('encoder.')} | {erank:.1f} | {energy:.1f} | "
                     f"{diag['sti_before'][name]:.3g} | {diag['sti_after'][name]:.2g} |")
    lines += ["", "Timings (s, wall, shared machine): " + ", ".join(
        f"{k} {v}" for k, v in results["timings_s"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
