"""Merging digits networks trained from different seeds: naive averaging, Git Re-Basin
to a reference, MergeMany and C²M³, each with and without REPAIR.

    nice -n 10 .venv/bin/python benchmarks/single_task/run.py [--arch mlp|resmlp]

Trains (or reuses) 15 models with the same recipe and seeds 0..14, splits them into
disjoint groups of 3 and of 5, merges every group with every method, and writes
``results_<arch>.json`` and ``results_<arch>.md`` (mean ± std over groups) beside this file.
References: Ainsworth et al. 2023 (Re-Basin, MergeMany); Crisostomi et al. 2024 (C²M³);
Jordan et al. 2023 (REPAIR).
"""

from __future__ import annotations

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

from merge3.alignment import METHODS, align_models
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
    return (f"{cpu}, {torch.get_num_threads()} torch threads, Python "
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
    parser.add_argument("--zoo", default=None, help="digits zoo directory (default: cache)")
    args = parser.parse_args(argv)

    config = DigitsConfig(arch=args.arch)
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
    for group_size in (3, 5):
        for group in range(N_MODELS // group_size):
            members = list(range(group * group_size, (group + 1) * group_size))
            group_states = [states[i] for i in members]
            for method in METHODS:
                tic = time.perf_counter()
                result = align_models(group_states, spec, method)
                seconds = time.perf_counter() - tic
                merged = _load(config, result.merged)
                endpoints = [_load(config, s) for s in result.aligned]
                repaired = repair(merged, endpoints, data.x_train, layers)
                acc, loss = evaluate(merged, data.x_test, data.y_test)
                r_acc, r_loss = evaluate(repaired, data.x_test, data.y_test)
                runs.append({
                    "models": group_size, "group": group, "seeds": members, "method": method,
                    "accuracy": acc, "loss": loss, "repair_accuracy": r_acc,
                    "repair_loss": r_loss, "seconds": seconds,
                    "iterations": max(len(result.objective) - 1, 0),
                })
                if method == "c2m3" and group == 0:
                    objectives[f"{group_size} models"] = result.objective
                print(f"N={group_size} group {group} {method:9s} acc {acc:.4f} loss {loss:.4f} "
                      f"| REPAIR acc {r_acc:.4f} loss {r_loss:.4f} ({seconds:.1f}s)")

    plot_objective(objectives, HERE / f"c2m3_objective_{args.arch}.png")
    endpoint_acc = np.array([s[0] for s in endpoint_scores])
    endpoint_loss = np.array([s[1] for s in endpoint_scores])
    summary = {
        "command": " ".join(["nice -n 10 .venv/bin/python benchmarks/single_task/run.py",
                             *sys.argv[1:]]),
        "machine": _machine(),
        "config": asdict(config),
        "endpoints": {"accuracy": endpoint_acc.tolist(), "loss": endpoint_loss.tolist()},
        "runs": runs,
    }
    (HERE / f"results_{args.arch}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (HERE / f"results_{args.arch}.md").write_text(_table(summary))
    print(_table(summary))
    return 0


def _fmt(values: list[float], percent: bool) -> str:
    arr = np.array(values) * (100 if percent else 1)
    return f"{arr.mean():.1f} ± {arr.std():.1f}" if percent else f"{arr.mean():.3f} ± {arr.std():.3f}"


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
        f"541 images. Endpoints: accuracy {_fmt(endpoints['accuracy'], True)}%, loss "
        f"{_fmt(endpoints['loss'], False)}.",
        "",
        "Mean ± std over disjoint groups of models (5 groups of 3, 3 groups of 5). REPAIR "
        "renormalises the hidden units with the training images.",
        "",
        "| models | method | accuracy % | loss | accuracy % (REPAIR) | loss (REPAIR) "
        "| time s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size in (3, 5):
        for method in METHODS:
            rows = [r for r in summary["runs"] if r["models"] == size and r["method"] == method]
            lines.append(
                f"| {size} | {method} | {_fmt([r['accuracy'] for r in rows], True)} | "
                f"{_fmt([r['loss'] for r in rows], False)} | "
                f"{_fmt([r['repair_accuracy'] for r in rows], True)} | "
                f"{_fmt([r['repair_loss'] for r in rows], False)} | "
                f"{np.mean([r['seconds'] for r in rows]):.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
