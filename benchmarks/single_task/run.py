"""Merging digits networks trained from different seeds: naive averaging, Git Re-Basin
to a reference, MergeMany and C²M³, each with and without REPAIR.

    nice -n 10 .venv/bin/python benchmarks/single_task/run.py [--arch mlp|resmlp]

Trains (or reuses) 15 models with the same recipe and seeds 0..14, draws random
subsets of 3 and of 5 of them, merges every subset with every method (the subset index
seeds the matching), and writes ``results_<arch>-h<hidden>.json`` and ``.md`` (mean ±
std over subsets) beside this file.
References: Ainsworth et al. 2023 (Re-Basin, MergeMany); Crisostomi et al. 2024 (C²M³);
Jordan et al. 2023 (REPAIR).
"""

# ruff: noqa: E402  (thread limits must be set before numpy is imported)
from __future__ import annotations

import os

# small matrices and a shared CPU: multi-threaded OpenBLAS spins and runs ~30x slower
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from merge3.alignment import align_models, to_numpy
from merge3.alignment.c2m3 import universe_objective
from merge3.alignment.repair import repair
from merge3.analysis.plots import plot_objective
from merge3.zoo.digits import (
    DigitsConfig,
    build_digits_zoo,
    build_model,
    digits_spec,
    evaluate,
    load_digits_data,
    load_digits_model,
)

HERE = Path(__file__).resolve().parent
# (label, method, options): C²M³ as in the paper (all models move) and anchored to the
# first model of the subset (its unit order is the universe)
VARIANTS = [("naive", "naive", {}), ("rebasin", "rebasin", {}),
            ("mergemany", "mergemany", {}), ("c2m3", "c2m3", {}),
            ("c2m3 anchored", "c2m3", {"anchor": 0})]
LABELS = [label for label, _, _ in VARIANTS]
N_MODELS = 15


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu} (2 cores, shared with other jobs), single-threaded torch and "
            f"OpenBLAS, Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def _repair_layers(config: DigitsConfig) -> list[str]:
    if config.arch == "mlp":
        return [f"layers.{i}" for i in range(config.depth)]
    return [f"blocks.{i}.fc_in" for i in range(config.depth)]


def _load(config: DigitsConfig, state: dict) -> torch.nn.Module:
    model = build_model(config)
    model.load_state_dict(state)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["mlp", "resmlp"], default="mlp")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width (default 64)")
    parser.add_argument("--subsets", type=int, default=10, help="subsets per size (default 10)")
    parser.add_argument("--zoo", default=None, help="digits zoo directory (default: cache)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    config = DigitsConfig(arch=args.arch, hidden=args.hidden)
    tag = f"{args.arch}-h{args.hidden}"
    data = load_digits_data(config.split_seed)
    start = time.perf_counter()
    paths = build_digits_zoo(args.zoo, seeds=range(N_MODELS), config=config, verbose=True)
    print(f"zoo ready in {time.perf_counter() - start:.1f}s")
    states = [load_digits_model(p)[0].state_dict() for p in paths]
    endpoint_scores = [evaluate(_load(config, s), data.x_test, data.y_test) for s in states]
    spec = digits_spec(config)
    layers = _repair_layers(config)

    runs = []
    objectives = {}
    rng = np.random.default_rng(0)
    for group_size in (3, 5):
        for group in range(args.subsets):
            members = sorted(rng.choice(N_MODELS, size=group_size, replace=False).tolist())
            group_states = [states[i] for i in members]
            params = [to_numpy(s, spec) for s in group_states]
            for method, name, options in VARIANTS:
                tic = time.perf_counter()
                seeded = {} if name == "naive" else {"seed": group}
                result = align_models(group_states, spec, name, **seeded, **options)
                seconds = time.perf_counter() - tic
                # the matching objective of the final permutations, per pair of models
                matrices = [{p: np.eye(len(i))[:, i] for p, i in perms.items()}
                            for perms in result.perms]
                pairs = group_size * (group_size - 1) / 2
                objective = universe_objective(params, spec, matrices) / pairs
                merged = _load(config, result.merged)
                endpoints = [_load(config, s) for s in result.aligned]
                repaired = repair(merged, endpoints, data.x_train, layers)
                acc, loss = evaluate(merged, data.x_test, data.y_test)
                r_acc, r_loss = evaluate(repaired, data.x_test, data.y_test)
                runs.append({
                    "models": group_size, "group": group, "seeds": members, "method": method,
                    "accuracy": acc, "loss": loss, "repair_accuracy": r_acc,
                    "repair_loss": r_loss, "seconds": seconds, "objective": objective,
                    "iterations": max(len(result.objective) - 1, 0),
                })
                if method == "c2m3" and group == 0:
                    objectives[f"{group_size} models"] = result.objective
                print(f"N={group_size} group {group} {method:9s} acc {acc:.4f} loss {loss:.4f} "
                      f"| REPAIR acc {r_acc:.4f} loss {r_loss:.4f} ({seconds:.1f}s)")

    plot_objective(objectives, HERE / f"c2m3_objective_{tag}.png")
    endpoint_acc = np.array([s[0] for s in endpoint_scores])
    endpoint_loss = np.array([s[1] for s in endpoint_scores])
    summary = {
        "command": " ".join(["nice -n 10 .venv/bin/python benchmarks/single_task/run.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "subsets": args.subsets,
        "test_images": len(data.y_test),
        "machine": _machine(),
        "config": asdict(config),
        "endpoints": {"accuracy": endpoint_acc.tolist(), "loss": endpoint_loss.tolist()},
        "runs": runs,
        "c2m3_objective_traces": objectives,
    }
    (HERE / f"results_{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (HERE / f"results_{tag}.md").write_text(_table(summary))
    print(_table(summary))
    return 0


def _fmt(values: list[float], percent: bool) -> str:
    arr = np.array(values) * (100 if percent else 1)
    digits = 1 if percent else 3
    return f"{arr.mean():.{digits}f} ± {arr.std():.{digits}f}"


def _table(summary: dict) -> str:
    config = summary["config"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    endpoints = summary["endpoints"]
    lines = [
        f"# Digits {config['arch']}: merging models trained from different seeds",
        "",
        f"Command: `{summary['command']}` (commit {commit}).  ",
        f"Machine: {summary['machine']}.  ",
        f"Models: {config['arch']} 64-{config['hidden']}×{config['depth']}-10"
        f"{' (stream width ' + str(config['width']) + ')' if config['arch'] == 'resmlp' else ''},"
        f" Adam lr {config['learning_rate']}, {config['epochs']} epochs, batch "
        f"{config['batch_size']}, seeds 0–{N_MODELS - 1}; scikit-learn digits, test split of "
        f"{summary['test_images']} images. Endpoints: accuracy "
        f"{_fmt(endpoints['accuracy'], True)}%, loss {_fmt(endpoints['loss'], False)}.",
        "",
        f"Mean ± std over {summary['subsets']} random subsets of the 15 models per size (the "
        "subset index seeds the matching). REPAIR renormalises the hidden units with the "
        "training images. Objective: the matching objective Σ_{a<b} Σ_W ⟨U_a, U_b⟩ of the "
        "final permutations, per pair of models (what all three alignments maximise). "
        "c2m3 anchored: the first model of the subset stays fixed (its unit order is the "
        "universe); c2m3: all models move, as in the paper.",
        "",
        "| models | method | accuracy % | loss | accuracy % (REPAIR) | loss (REPAIR) "
        "| objective | time s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in (3, 5):
        for method in LABELS:
            rows = [r for r in summary["runs"] if r["models"] == size and r["method"] == method]
            lines.append(
                f"| {size} | {method} | {_fmt([r['accuracy'] for r in rows], True)} | "
                f"{_fmt([r['loss'] for r in rows], False)} | "
                f"{_fmt([r['repair_accuracy'] for r in rows], True)} | "
                f"{_fmt([r['repair_loss'] for r in rows], False)} | "
                f"{np.mean([r['objective'] for r in rows]):.1f} | "
                f"{np.mean([r['seconds'] for r in rows]):.2f} |"
            )
    lines += ["", "Paired over the same subsets (accuracy without REPAIR, percentage points):", ""]
    for size in (3, 5):
        by_method = {m: [r["accuracy"] for r in summary["runs"]
                         if r["models"] == size and r["method"] == m] for m in LABELS}
        for better, worse in (("c2m3", "mergemany"), ("mergemany", "naive"),
                              ("c2m3", "rebasin"), ("c2m3 anchored", "mergemany"),
                              ("c2m3 anchored", "c2m3")):
            diff = 100 * (np.array(by_method[better]) - np.array(by_method[worse]))
            lines.append(f"- {size} models, {better} − {worse}: {diff.mean():+.1f} ± "
                         f"{diff.std():.1f} pp, {better} ahead on {(diff > 0).sum()} of "
                         f"{len(diff)} subsets, tied on {(diff == 0).sum()}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
