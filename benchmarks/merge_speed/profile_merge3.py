"""Where `merge3 merge` spends its time and memory: cProfile and peak RSS split in two.

    nice -n 10 .venv/bin/python benchmarks/merge_speed/profile_merge3.py RECIPE.yaml [--profile]

Runs merge3's merge (``load_recipe`` + ``run_merge``: what `merge3 merge` does, without
the CLI's imports) in a fresh child process and prints its wall and CPU seconds, its peak
RSS, and the peaks of RssAnon (allocations) and RssFile (mapped file pages, such as
memory-mapped safetensors) sampled every 0.1 s; ``--profile`` adds the top functions.
(Earlier versions of this script monkeypatched candidate fixes into the child to measure
them before they were made; merge3 e412875 made them, see README.md.)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def sample_rss(peaks: dict[str, int], stop: threading.Event) -> None:
    """Peak RssAnon (allocations) and RssFile (mapped file pages, e.g. safetensors mmaps)."""
    while not stop.wait(0.1):
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    peaks[key] = max(peaks.get(key, 0), int(value.split()[0]))


def child(recipe: str, out: str, profile: str | None) -> None:
    peaks: dict[str, int] = {}
    stop = threading.Event()
    threading.Thread(target=sample_rss, args=(peaks, stop), daemon=True).start()
    from merge3.merging import run_merge
    from merge3.recipe import load_recipe

    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_merge, load_recipe(recipe), out, out_shard_size="200MB",
                         progress=False, overwrite=True)
        profiler.dump_stats(profile)
    else:
        run_merge(load_recipe(recipe), out, out_shard_size="200MB", progress=False,
                  overwrite=True)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_start
    print(json.dumps({"merge_seconds": round(seconds, 1),
                      "merge_cpu_seconds": round(cpu, 1),
                      "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3),
                      **{f"peak_{k}_gb": round(v * 1024 / 1e9, 3) for k, v in peaks.items()}}))
    stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.recipe, args.out, args.stats)
        return 0
    out = Path(tempfile.mkdtemp(prefix="merge3-profile-"))
    stats = out / "merge3.prof"
    try:
        cmd = [sys.executable, __file__, args.recipe, "--child", "--out", str(out / "model")]
        if args.profile:
            cmd += ["--stats", str(stats)]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if args.profile:
            pstats.Stats(str(stats)).sort_stats("tottime").print_stats(15)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
