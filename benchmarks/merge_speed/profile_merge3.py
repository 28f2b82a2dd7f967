"""Where `merge3 merge` spends its time and memory, and what candidate fixes would save.

    nice -n 10 .venv/bin/python benchmarks/merge_speed/profile_merge3.py RECIPE.yaml \
        [--patch fast-finite one-handle fused-sum] [--profile]

Runs merge3's merge (``load_recipe`` + ``run_merge``, what `merge3 merge` does, without the
CLI's imports) in a fresh child process per variant and prints wall seconds and peak RSS.
``--patch`` applies experimental replacements *in that child only* (merge3's files are not
touched), to measure a fix before anyone makes it:

- ``fast-finite``: the NaN/Inf check as ``isfinite(|x|.amax())`` (NaN propagates through
  ``amax``) instead of ``torch.isfinite(x).all()``.
- ``one-handle``: keep one open safetensors file per checkpoint, as mergekit's
  ``LazyTensorLoader`` does, instead of every shard's memory map for the whole merge.
- ``fused-sum``: task arithmetic / TIES accumulate weighted deltas in place instead of
  stacking them (``torch.stack`` of N float32 copies).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def patch_fast_finite() -> None:
    from merge3 import merging
    from merge3.errors import CheckpointError

    def check_finite(tensor: torch.Tensor, name: str, source) -> None:
        finite = (not tensor.is_floating_point() or not tensor.numel()
                  or math.isfinite(float(tensor.abs().amax())))
        if not finite:
            raise CheckpointError(f"Tensor {name!r} in {source.path} contains NaN or Inf.",
                                  fix="re-export it or leave it out.")

    merging._check_finite = check_finite


def patch_one_handle() -> None:
    from safetensors import safe_open

    from merge3.checkpoints import Checkpoint

    def get(self, name: str) -> torch.Tensor:
        info = self.info(name)
        if self._pickled is not None:
            return self._pickled[name]
        handle = self._handles.get(info.file)
        if handle is None:
            self._handles.clear()  # drop the previous shard's memory map
            handle = safe_open(str(info.file), framework="pt", device="cpu")
            self._handles[info.file] = handle
        return handle.get_tensor(name)

    Checkpoint.get = get


def patch_fused_sum() -> None:
    from merge3.methods import task_arithmetic

    original = task_arithmetic.combine_task_vectors

    def combine(tensors, base, weight, *, sparsify=None, sign_consensus=False,
                normalize=False, lambda_=1.0):
        if sign_consensus:
            return original(tensors, base, weight, sparsify=sparsify,
                            sign_consensus=sign_consensus, normalize=normalize,
                            lambda_=lambda_)
        merged = torch.zeros_like(base)
        for i, tensor in enumerate(tensors):
            delta = tensor - base
            if sparsify:
                delta = sparsify(delta, i)
            merged.add_(delta, alpha=float(weight[i]))
        total = float(sum(weight))
        if normalize and abs(total) >= 1e-8:
            merged.div_(total)
        return base.add(merged, alpha=float(lambda_)) if lambda_ != 1 else base.add(merged)

    task_arithmetic.combine_task_vectors = combine


PATCHES = {"fast-finite": patch_fast_finite, "one-handle": patch_one_handle,
           "fused-sum": patch_fused_sum}


def child(recipe: str, out: str, patches: list[str], profile: str | None) -> None:
    for name in patches:
        PATCHES[name]()
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
    print(json.dumps({"patches": patches, "merge_seconds": round(seconds, 1),
                      "merge_cpu_seconds": round(cpu, 1),
                      "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--patch", nargs="*", default=[], choices=sorted(PATCHES))
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.recipe, args.out, args.patch, args.stats)
        return 0
    out = Path(tempfile.mkdtemp(prefix="merge3-profile-"))
    stats = out / "merge3.prof"
    try:
        cmd = [sys.executable, __file__, args.recipe, "--child", "--out", str(out / "model"),
               "--patch", *args.patch]
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
