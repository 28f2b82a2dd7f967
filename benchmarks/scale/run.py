"""A search worker's memory and seconds per candidate at scale, before and after #15.

One worker's job on the 258.5M-parameter bf16 Llama of benchmarks/merge_speed (base and
two experts, 0.52 GB each): hold the models, build a candidate, put it into the resident
transformers evaluator. Two ways, each in a fresh process:

- ``fp32-dicts`` (the worker before #15): base and experts loaded as float32 state dicts,
  each candidate built as a whole float32 state dict, then copied into the evaluator;
- ``stream-files`` (now): base and experts are ``Checkpoint``s in their own dtype, read
  tensor by tensor as merged (from the page cache), and ``Materializer.stream`` feeds the
  evaluator tensor by tensor.

Measured per process: anonymous and file-backed resident memory (``RssAnon``/``RssFile``
of /proc/self/status, sampled every 20 ms), its peak, and wall seconds per candidate
(the first candidate of a fresh worker: it includes the one-off unchanged-tensor scan).

    nice -n 10 .venv/bin/python benchmarks/merge_speed/build_data.py   # once, 1.55 GB
    .venv/bin/python benchmarks/scale/run.py          # ~6 min on 2 cores; rewrites README table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "merge_speed" / "data"
HERE = Path(__file__).resolve().parent
MODES = ("fp32-dicts", "stream-files")
RECIPES = {
    "task_arithmetic": {"merge_method": "task_arithmetic",
                        "parameters": {"lambda": 1.0}, "weights": (0.6, 0.4)},
    "ties": {"merge_method": "ties", "parameters": {"density": 0.5}, "weights": (0.6, 0.4)},
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler:
    """Peak RssAnon / RssFile of this process, sampled in a thread."""

    def __init__(self) -> None:
        self.peak = {"anon": 0, "file": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.02)

    def sample(self) -> dict[str, float]:
        now = {"anon": _status_kb("RssAnon"), "file": _status_kb("RssFile")}
        for k, v in now.items():
            self.peak[k] = max(self.peak[k], v)
        return {k: v / 2**20 for k, v in now.items()}  # GiB

    def reset(self) -> None:
        self.peak = {"anon": 0, "file": 0}

    def peaks(self) -> dict[str, float]:
        return {k: v / 2**20 for k, v in self.peak.items()}

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _recipe(method: str) -> dict:
    spec = RECIPES[method]
    return {"merge_method": spec["merge_method"], "base_model": str(DATA / "base"),
            "models": [{"model": str(DATA / f"expert_{i + 1}"), "parameters": {"weight": w}}
                       for i, w in enumerate(spec["weights"])],
            "parameters": spec["parameters"]}


def worker(mode: str, threads: int) -> dict:
    """One worker's setup and candidates, in this process."""
    import torch

    from evaluators.hf import HFCausalLM
    from merge3.checkpoints import Checkpoint
    from search.materialize import Materializer

    torch.set_num_threads(threads)
    out: dict = {"mode": mode}
    with Sampler() as mem:
        start = time.perf_counter()
        evaluator = HFCausalLM(DATA / "base", device="cpu", dtype="float32", progress=False)
        out["evaluator"] = mem.sample()
        base = Checkpoint(DATA / "base")
        experts = [Checkpoint(DATA / f"expert_{i}") for i in (1, 2)]
        if mode == "fp32-dicts":
            materializer = Materializer({k: v.float() for k, v in base.items()},
                                        [{k: v.float() for k, v in e.items()} for e in experts],
                                        num_layers=base.num_layers())
        else:
            materializer = Materializer(base, experts, num_layers=base.num_layers())
        out["setup_s"] = time.perf_counter() - start
        out["after_setup"] = mem.sample()
        out["candidates"] = {}
        for method in RECIPES:
            mem.reset()
            start = time.perf_counter()
            recipe = _recipe(method)
            if mode == "fp32-dicts":
                evaluator.load_weights(materializer.materialize(recipe))
            else:
                evaluator.load_weights(materializer.stream(recipe))
            seconds = time.perf_counter() - start
            checksum = float(sum(p.double().sum() for p in evaluator.model.parameters()))
            out["candidates"][method] = {"seconds": seconds, "peak": mem.peaks(),
                                         "checksum": checksum}
    return out


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
        cpu = model
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; torch {torch.__version__}; "
            f"python {platform.python_version()}")


def table(results: list[dict]) -> str:
    gb = 0.517  # one bf16 model (base or expert), GB on disk
    lines = ["| mode | after setup: anon / file GiB | candidate | seconds | peak anon GiB "
             "| peak file GiB | peak anon ÷ bf16 model |", "|---|---|---|---|---|---|---|"]
    for r in results:
        setup = r["after_setup"]
        for method, c in r["candidates"].items():
            lines.append(f"| {r['mode']} | {setup['anon']:.2f} / {setup['file']:.2f} | "
                         f"{method} | {c['seconds']:.1f} | {c['peak']['anon']:.2f} | "
                         f"{c['peak']['file']:.2f} | {c['peak']['anon'] / gb:.1f}× |")
    return "\n".join(lines)


def write_readme(record: dict) -> None:
    """Put the table of ``record`` between the RESULTS markers of README.md."""
    readme = HERE / "README.md"
    text = readme.read_text()
    head, rest = text.split("<!-- RESULTS -->", 1)
    _, tail = rest.split("<!-- /RESULTS -->", 1)
    body = (f"Generated by `.venv/bin/python benchmarks/scale/run.py --threads "
            f"{record['threads']}` on {record['when']} at {record['commit']}; "
            f"{record['machine']}.\n\n{table(record['results'])}")
    readme.write_text(f"{head}<!-- RESULTS -->\n{body}\n<!-- /RESULTS -->{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the README table from results.json")
    args = parser.parse_args()
    if args.report_only:
        write_readme(json.loads(args.out.read_text()))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return 0
    if not (DATA / "base" / "config.json").is_file():
        sys.exit(f"{DATA} has no checkpoints: run benchmarks/merge_speed/build_data.py first")
    results = []
    for mode in MODES:
        print(f"[scale] {mode} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--worker", mode,
                               "--threads", str(args.threads)], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    record = {"machine": _machine(), "commit": commit, "threads": args.threads,
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": results}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    write_readme(record)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
