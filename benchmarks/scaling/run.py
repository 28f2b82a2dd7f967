"""Scaling: candidate evaluations per minute with 1 and N Ray workers, on one node and on a
two-node Ray cluster on loopback.

The candidates are the main job's (``merge3 demo``): TSV-M merges of the demo zoo's six
experts, genomes drawn at random (seeded, the same list for every setting), each
materialised in memory by a worker actor and scored on the k anchor items of every task
(k = 30: 180 items a candidate). The workers are the search's own (``search.workers``:
``WorkerPool`` of ``CandidateWorker`` actors, 1 CPU and 1 torch thread each).

Per setting: start Ray, start the workers, give each one warm-up candidate (a worker
computes the experts' TSV factors on its first merge), then time ``--candidates``
candidates. Rate = candidates / minutes; speedup = rate ÷ the 1-worker rate; efficiency =
speedup ÷ workers (target ≥ 0.8). Settings are interleaved over ``--repeats`` rounds so a
change in the machine's load hits all of them alike.

Usage (from the repo root, with a built demo zoo under $MERGE3_HOME):
    .venv/bin/python benchmarks/scaling/run.py                # writes results.json/.md
    .venv/bin/python benchmarks/scaling/run.py --workers 4    # on a machine with ≥ 4 cores
    .venv/bin/python benchmarks/scaling/run.py --report-only  # tables from results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    # other people's uncommitted edits in the work tree at the time of the run
    dirty = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=REPO,
                           capture_output=True, text=True).stdout.split()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    import ray
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "ray": ray.__version__, "commit": commit,
            "uncommitted": dirty,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "uptime_at_start": uptime}


def _probe_work(iterations: int) -> tuple[float, float]:
    """A fixed amount of single-threaded torch work (matrix products): wall and CPU time."""
    import torch

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(384, 384, generator=generator)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        a = torch.tanh(a @ a * 0.05)
    return time.perf_counter() - start, time.process_time() - cpu


def machine_parallelism(workers: int, iterations: int = 3000) -> dict[str, float]:
    """How much faster ``workers`` plain processes get through the same work than one,
    right now: the ceiling for any worker pool on this machine (no Ray involved)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        pool.map(_probe_work, [50] * workers)  # start-up and warm-up
        start = time.perf_counter()
        alone = pool.map(_probe_work, [iterations])
        one = time.perf_counter() - start
        start = time.perf_counter()
        together = pool.map(_probe_work, [iterations] * workers, chunksize=1)
        many = time.perf_counter() - start
    # share of a core each process got: its CPU time over its wall time
    return {"one_seconds": one, "many_seconds": many, "speedup": workers * one / many,
            "core_share_alone": alone[0][1] / alone[0][0],
            "core_share_together": float(np.mean([c / w for w, c in together]))}


def candidates(anchors: int, count: int, seed: int, zoo_size: str = "demo"
               ) -> tuple[Any, list[dict[str, Any]], dict[str, list[str]]]:
    """The worker spec, ``count`` random candidate recipes, and the anchor items."""
    from merge3.genome import Genome
    from merge3.models import resolve_model
    from merge3.zoo.build import build_zoo
    from search.config import parse_config
    from search.demo import calibrate_zoo_banks, demo_search_config
    from search.fitness import Fitness
    from search.prepare import resolve_task
    from search.workers import WorkerSpec

    zoo_dir = build_zoo(zoo_size, progress=False)
    banks = calibrate_zoo_banks(zoo_dir, quiet=True)
    config = parse_config(demo_search_config(zoo_dir, banks, size=zoo_size, population=8,
                                             generations=1, anchors=anchors, workers=1))
    base = str(resolve_model(config.base_model))
    experts = {k: str(resolve_model(v)) for k, v in config.experts.items()}
    tasks = {k: resolve_task(v) for k, v in config.tasks.items()}
    genome = Genome(config.method, experts, config.genome, base_model=base)
    fitness = Fitness(list(tasks), config.fitness.estimator, config.fitness.item_bank,
                      anchors, config.fitness.anchor_method, config.fitness.seed)
    rng = random.Random(seed)
    recipes = [genome.decode({g.name: rng.uniform(g.low, g.high) for g in genome.genes})
               for _ in range(count)]
    spec = WorkerSpec(base, experts, tasks, threads=1)
    return spec, recipes, fitness.items_for_candidate()


class _Setting:
    """A Ray for one setting: local (one node) or a two-node cluster on loopback."""

    def __init__(self, kind: str, workers: int) -> None:
        self.kind, self.workers, self.cluster = kind, workers, None

    def __enter__(self) -> _Setting:
        import ray

        if self.kind == "local":
            from search.workers import init_ray

            init_ray(None, num_cpus=self.workers)
        else:
            from ray.cluster_utils import Cluster

            # ray.cluster_utils.Cluster: `ray start --address` refuses a second node on
            # loopback when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (docs: ENVIRONMENT facts)
            per_node = self.workers // 2
            self.cluster = Cluster(initialize_head=True, connect=False, head_node_args={
                "num_cpus": per_node, "node_ip_address": "127.0.0.1",
                "include_dashboard": False})
            self.cluster.add_node(num_cpus=self.workers - per_node,
                                  node_ip_address="127.0.0.1")
            self.cluster.wait_for_nodes()
            ray.init(address=self.cluster.address, log_to_driver=False)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()


def measure(kind: str, workers: int, spec, recipes, items, warm: list[dict[str, Any]]
            ) -> dict[str, Any]:
    import ray

    from search.workers import CandidateResult, WorkerPool

    load_before = _load()
    started = time.perf_counter()
    with _Setting(kind, workers):
        pool = WorkerPool(spec, count=workers, cpus=1)
        try:
            nodes = {info["node"] for info in ray.get([a.info.remote() for a in pool.actors])}
            ready = time.perf_counter() - started
            warm_start = time.perf_counter()
            pool.run([(f"warm-{i}", warm[i % len(warm)], items) for i in range(workers)],
                     lambda result: None)
            warm_seconds = time.perf_counter() - warm_start
            results: list[CandidateResult] = []
            load_timed = _load()
            processes = _actor_processes(pool)
            cpu_before = [_cpu_seconds(p) for p in processes]
            start = time.perf_counter()
            pool.run([(i, recipe, items) for i, recipe in enumerate(recipes)], results.append)
            seconds = time.perf_counter() - start
            cpu = [_cpu_seconds(p) - c for p, c in zip(processes, cpu_before)]
        finally:
            pool.shutdown()
    failed = [r for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} candidates failed: {failed[0].error}")
    used = {r.worker.rpartition("@")[2] for r in results}
    return {
        "setting": kind, "workers": workers, "nodes": len(nodes),
        "nodes_used": len(used), "candidates": len(results),
        "items_per_candidate": results[0].items_evaluated,
        "seconds": seconds, "per_minute": 60 * len(results) / seconds,
        "candidate_seconds_mean": float(np.mean([r.seconds for r in results])),
        "materialize_seconds_mean": float(np.mean([r.materialize_seconds for r in results])),
        "startup_seconds": ready, "warmup_seconds": warm_seconds,
        # CPU-seconds each worker process used per second of the timed batch (1.0 = a
        # whole core); all workers run on this machine, the two-node cluster included
        "worker_core_share": [c / seconds for c in cpu],
        "load_before": load_before, "load_at_timing": load_timed, "load_after": _load(),
    }


def _actor_processes(pool) -> list:
    """The worker actors' OS processes (``CandidateWorker.name`` is host:pid@node)."""
    import psutil
    import ray

    names = [info["worker"] for info in ray.get([a.info.remote() for a in pool.actors])]
    return [psutil.Process(int(name.split(":", 1)[1].split("@", 1)[0])) for name in names]


def _cpu_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: the median rate over rounds; speedup against the 1-worker median."""
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        rows.setdefault((run["setting"], run["workers"]), []).append(run)
    one = float(np.median([r["per_minute"] for r in rows[("local", 1)]]))
    out = []
    for (kind, workers), group in rows.items():
        rate = float(np.median([r["per_minute"] for r in group]))
        out.append({"setting": kind, "workers": workers, "rounds": len(group),
                    "per_minute": rate, "per_minute_all": [r["per_minute"] for r in group],
                    "speedup": rate / one, "efficiency": rate / one / workers,
                    "candidate_seconds_mean": float(np.mean(
                        [r["candidate_seconds_mean"] for r in group])),
                    "worker_core_share": float(np.mean(
                        [np.mean(r["worker_core_share"]) for r in group])),
                    "load_at_timing": [r["load_at_timing"][0] for r in group]})
    return out


def format_tables(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"{m['date']}, commit {m['commit']}, {m['cores']} cores ({m['cpu']}), "
             f"Python {m['python']}, torch {m['torch']}, Ray {m['ray']}; "
             f"{results['candidates']} candidates per measurement × {results['rounds']} "
             f"round(s), {results['items_per_candidate']} items per candidate.",
             f"`uptime` at the start: {m['uptime_at_start']}", "",
             "| setting | workers | evaluations / min (median; each round) | speedup | "
             "efficiency (target ≥ 0.8) | seconds per candidate | share of a core per "
             "worker | evaluations per core-minute received | 1-min load during timing |",
             "|---|---|---|---|---|---|---|---|---|"]
    probes = results.get("probes", [])
    for row in results["summary"]:
        where = "one node" if row["setting"] == "local" else "two-node loopback cluster"
        lines.append(
            f"| {where} | {row['workers']} | {row['per_minute']:.1f} ("
            + ", ".join(f"{x:.1f}" for x in row["per_minute_all"]) + ") | "
            f"{row['speedup']:.2f}× | {row['efficiency']:.2f} | "
            f"{row['candidate_seconds_mean']:.1f} | "
            + (f"{row['worker_core_share']:.2f} | "
               f"{row['per_minute'] / (row['workers'] * row['worker_core_share']):.1f} | "
               if "worker_core_share" in row else " | | ")
            + ", ".join(f"{x:.1f}" for x in row["load_at_timing"]) + " |")
    if probes:
        workers = max(row["workers"] for row in results["summary"])
        lines += ["", f"Machine ceiling (no Ray): {workers} plain processes doing a fixed "
                  "single-threaded torch workload finished "
                  + ", ".join(f"{p['speedup']:.2f}×" for p in probes)
                  + f" the work of one in the same time (one per round; {workers}× on "
                  "idle cores)"
                  + ("; each got " + ", ".join(f"{p['core_share_together']:.2f}"
                                               for p in probes)
                     + " of a core (alone: " + ", ".join(f"{p['core_share_alone']:.2f}"
                                                         for p in probes) + ")."
                     if "core_share_together" in probes[0] else ".")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="N (compared with 1)")
    parser.add_argument("--candidates", type=int, default=12, help="timed per measurement")
    parser.add_argument("--anchors", type=int, default=30, help="anchor items per task")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zoo-size", default="demo", choices=("demo", "bench"),
                        help="bench: the same experts with larger test pools (the work per "
                             "candidate, 30 anchors per task, is the same)")
    parser.add_argument("--out", type=Path, default=HERE, help="results.json, results.md")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite results.md from results.json")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(format_tables(results))
        print(format_tables(results))
        return 0
    import torch

    torch.set_num_threads(1)
    machine = _machine()
    spec, recipes, items = candidates(args.anchors, args.candidates + 2 * args.workers,
                                      args.seed, args.zoo_size)
    warm, recipes = recipes[:2 * args.workers], recipes[2 * args.workers:]
    settings = [("local", 1), ("local", args.workers)]
    if not args.no_cluster:
        settings.append(("cluster", args.workers))
    runs, probes = [], []
    for round_ in range(args.rounds):
        probe = machine_parallelism(args.workers)
        probe.update(round=round_ + 1, load=_load())
        probes.append(probe)
        print(f"round {round_ + 1}: {args.workers} plain processes do "
              f"{probe['speedup']:.2f}× the work of one (machine ceiling)", flush=True)
        for kind, workers in settings:
            print(f"round {round_ + 1}: {kind}, {workers} worker(s), load {_load()}", flush=True)
            run = measure(kind, workers, spec, recipes, items, warm)
            run["round"] = round_ + 1
            print(f"  {run['per_minute']:.2f} evaluations/min ({run['seconds']:.0f} s, "
                  f"{run['nodes']} node(s), {run['candidate_seconds_mean']:.1f} s each)",
                  flush=True)
            runs.append(run)
    results = {"machine": machine,
               "command": (f"python benchmarks/scaling/run.py --workers {args.workers} "
                           f"--candidates {args.candidates} --anchors {args.anchors} "
                           f"--rounds {args.rounds} --seed {args.seed} "
                           f"--zoo-size {args.zoo_size}"
                           + (" --no-cluster" if args.no_cluster else "")),
               "candidates": args.candidates, "rounds": args.rounds,
               "items_per_candidate": runs[0]["items_per_candidate"],
               "runs": runs, "probes": probes, "summary": summarise(runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(format_tables(results))
    print(format_tables(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
