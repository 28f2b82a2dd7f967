"""Parity of `merge3 merge` with mergekit on the same recipes and the same checkpoints.

Builds small real checkpoints (tiny Llama and GPT-2, float32 and bfloat16, a base and
three experts), runs every recipe below with both tools, compares every output tensor and
writes the table to ``benchmarks/mergekit_parity/README.md`` (between the RESULTS markers).
mergekit runs through its own CLI from ``.venv-mergekit`` (``mergekit-multi``: all recipes
of a family in one process, ``mergekit-yaml`` for any it did not produce); merge3 runs
in this process exactly as ``merge3 merge RECIPE OUT`` does (``load_recipe`` + ``run_merge``).

    benchmarks/setup_mergekit.sh
    nice -n 10 .venv/bin/python benchmarks/mergekit_parity/run.py

A case passes when both outputs have the same tensor names, shapes and dtypes and every
tensor is ``torch.allclose`` at float32 tolerance (rtol 1e-5, atol 1e-6); a bfloat16
output element may also be one bfloat16 step (ulp) away: the rounding of float32 results
that differ in their last bit. DARE draws random masks, so its cases check
names, shapes and dtypes only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MERGEKIT = ROOT / ".venv-mergekit" / "bin" / "mergekit-yaml"
RTOL, ATOL = 1e-5, 1e-6
LAYERS = 4

Paths = dict[str, str]


@dataclass(frozen=True)
class Case:
    """One recipe run by both tools; ``exact`` False compares names/shapes/dtypes only."""

    name: str
    recipe: Callable[[Paths], dict[str, Any]]
    what: str
    exact: bool = True
    archs: tuple[str, ...] = ("llama", "gpt2")


def _models(paths: Paths, params: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"model": paths[name], "parameters": p} if p else {"model": paths[name]}
            for name, p in params.items()]


def _slices(paths: Paths, names: list[str]) -> list[dict[str, Any]]:
    return [{"sources": [{"model": paths[n], "layer_range": [0, LAYERS]} for n in names]}]


# Per-tensor filters that mergekit users write: attention and MLP tensors by substring.
ATTN = {"llama": "self_attn", "gpt2": "attn"}
MLP = "mlp"

CASES: list[Case] = [
    Case("linear", lambda p: {
        "merge_method": "linear",
        "models": _models(p, {"expert_1": {"weight": 1.0}, "expert_2": {"weight": 2.0},
                              "expert_3": {"weight": 0.5}}),
    }, "per-model weights, normalize (default true)"),
    Case("linear_no_normalize", lambda p: {
        "merge_method": "linear",
        "models": _models(p, {"expert_1": {"weight": 0.3}, "expert_2": {"weight": 0.45}}),
        "parameters": {"normalize": False},
    }, "normalize: false"),
    Case("linear_gradient_filter", lambda p: {
        "merge_method": "linear",
        "models": _models(p, {
            "expert_1": {"weight": [{"filter": MLP, "value": [0.1, 0.9]}, {"value": 0.5}]},
            "expert_2": {"weight": [{"filter": MLP, "value": [0.9, 0.1]}, {"value": 0.5}]},
        }),
    }, "weight: filter on mlp with a 2-point gradient, else 0.5"),
    Case("task_arithmetic", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "models": _models(p, {"base": {}, "expert_1": {"weight": 0.5},
                              "expert_2": {"weight": 0.3}, "expert_3": {"weight": 0.8}}),
    }, "base listed among models (as mergekit recipes do), weights"),
    Case("task_arithmetic_lambda_gradient", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": [0.2, 1.0]},
                              "expert_2": {"weight": [1.0, 0.1, 0.6]}}),
        "parameters": {"lambda": 0.7},
    }, "weight gradients [0.2,1.0] and [1.0,0.1,0.6], lambda 0.7"),
    Case("task_arithmetic_normalize", lambda p: {
        "merge_method": "task_arithmetic", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.5}, "expert_2": {"weight": 1.5}}),
        "parameters": {"normalize": True},
    }, "normalize: true"),
    Case("ties", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.5},
                              "expert_2": {"weight": 0.6, "density": 0.7},
                              "expert_3": {"weight": 0.9, "density": 0.3}}),
    }, "weights, densities, normalize (default true)"),
    Case("ties_density_gradient", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": [0.2, 0.8]},
                              "expert_2": {"weight": 1.0, "density": [0.9, 0.4]}}),
        "parameters": {"normalize": False, "lambda": 1.2},
    }, "density gradients, normalize: false, lambda 1.2"),
    Case("ties_filters", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {
            "expert_1": {"weight": 1.0,
                         "density": [{"filter": MLP, "value": 0.3}, {"value": 0.8}]},
            "expert_2": {"weight": [{"filter": MLP, "value": 0.4}, {"value": 1.0}],
                         "density": 0.5},
        }),
        "parameters": {"int8_mask": True},
    }, "filtered density and weight, int8_mask"),
    Case("ties_global_defaults", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {}, "expert_2": {}, "expert_3": {}}),
        "parameters": {"weight": 0.7, "density": 0.4},
    }, "per-model weight/density given once under global parameters"),
    Case("breadcrumbs", lambda p: {
        "merge_method": "breadcrumbs", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.8, "gamma": 0.05},
                              "expert_2": {"weight": 0.7, "density": 0.6, "gamma": 0.02}}),
    }, "density and gamma per model"),
    Case("breadcrumbs_ties", lambda p: {
        "merge_method": "breadcrumbs_ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 1.0, "density": 0.7, "gamma": 0.05},
                              "expert_2": {"weight": 0.8, "density": 0.5, "gamma": 0.1}}),
        "parameters": {"normalize": True},
    }, "breadcrumbs masks + TIES sign election, normalize: true"),
    Case("slerp", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "models": _models(p, {"base": {}, "expert_1": {}}),
        "parameters": {"t": 0.3},
    }, "t 0.3 (models form)"),
    Case("slerp_canonical_llama", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "slices": _slices(p, ["base", "expert_1"]),
        "parameters": {"t": [
            {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
            {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
            {"value": 0.5},
        ]},
    }, "the canonical mergekit slerp recipe: slices, 5-point t gradients per filter",
        archs=("llama",)),
    Case("slerp_canonical_gpt2", lambda p: {
        "merge_method": "slerp", "base_model": p["base"],
        "slices": _slices(p, ["base", "expert_1"]),
        "parameters": {"t": [
            {"filter": "attn", "value": [0, 0.5, 0.3, 0.7, 1]},
            {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
            {"value": 0.5},
        ]},
    }, "the same on GPT-2 names", archs=("gpt2",)),
    Case("dare_linear", lambda p: {
        "merge_method": "dare_linear", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.6, "density": 0.5},
                              "expert_2": {"weight": 0.4, "density": 0.7}}),
    }, "random: names/shapes/dtypes only", exact=False),
    Case("dare_ties", lambda p: {
        "merge_method": "dare_ties", "base_model": p["base"],
        "models": _models(p, {"expert_1": {"weight": 0.6, "density": 0.5},
                              "expert_2": {"weight": 0.4, "density": 0.7}}),
    }, "random: names/shapes/dtypes only", exact=False),
    Case("filter_fallthrough", lambda p: {
        "merge_method": "ties", "base_model": p["base"],
        "models": _models(p, {
            "expert_1": {"weight": 1.0, "density": [{"filter": MLP, "value": 0.3}]},
            "expert_2": {"weight": 1.0},
        }),
        "parameters": {"density": 0.6, "lambda": [{"filter": MLP, "value": 0.5}]},
    }, "a filter list that matches no tensor falls through to the global value, "
       "then to the default"),
]


# Run once more with `dtype: bfloat16` (bf16 arithmetic in mergekit) on the Llama family.
BF16_MATH_CASES = {"linear", "task_arithmetic", "ties", "slerp", "breadcrumbs"}


@dataclass
class Result:
    family: str
    case: str
    dtype_mode: str
    status: str
    tensors: int = 0
    max_abs: float = 0.0
    beyond: int = 0  # elements outside the tolerance
    differing: int = 0
    numel: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_all(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensors[key] = handle.get_tensor(key)
    return tensors


def bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many bfloat16 values lie between a and b (0: equal, 1: neighbours).

    Counted on the sign-magnitude bit patterns mapped to a monotone integer line.
    """
    def line(x: torch.Tensor) -> torch.Tensor:
        bits = x.contiguous().view(torch.int16).int()
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)

    return (line(a) - line(b)).abs()


def compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
            exact: bool, result: Result) -> None:
    only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if only_ours or only_theirs:
        result.notes.append(f"names differ: merge3 only {only_ours[:3]}, "
                            f"mergekit only {only_theirs[:3]}")
    ok = not (only_ours or only_theirs)
    worst_name = ""
    for name in sorted(set(ours) & set(theirs)):
        a, b = ours[name], theirs[name]
        result.tensors += 1
        if a.shape != b.shape or a.dtype != b.dtype:
            result.notes.append(f"{name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
            ok = False
            continue
        if not exact:
            continue
        diff = (a.double() - b.double()).abs()
        result.numel += diff.numel()
        result.differing += int((diff > 0).sum())
        if diff.numel() and float(diff.max()) > result.max_abs:
            result.max_abs, worst_name = float(diff.max()), name
        close = diff <= ATOL + RTOL * b.double().abs()  # torch.allclose, element by element
        if a.dtype == torch.bfloat16:
            # One rounding step of float32 results that differ in their last bit. (Tiny
            # values after cancellation can be a few steps apart yet float32-close.)
            close |= bf16_ulps(a, b) <= 1
        result.beyond += int((~close).sum())
        ok &= bool(close.all())
    if worst_name and result.max_abs > 0:
        result.notes.append(f"largest diff in {worst_name}")
    result.status = "PASS" if ok else "FAIL"


def run_mergekit_yaml(recipe_path: Path, out: Path) -> str | None:
    """One recipe through ``mergekit-yaml``; returns the error line on failure."""
    proc = subprocess.run([str(MERGEKIT), str(recipe_path), str(out), "--quiet",
                           "--random-seed", "0"], capture_output=True, text=True, cwd=ROOT)
    (recipe_path.parent / "mergekit.log").write_text(proc.stdout + proc.stderr)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def run_mergekit_all(jobs: list[tuple[str, Path]], family_dir: Path) -> dict[str, str | None]:
    """All recipes of a family in one ``mergekit-multi`` process (mergekit's own CLI for
    several named recipes; it saves one import of torch+mergekit per recipe), falling back
    to one ``mergekit-yaml`` per recipe whose output is missing."""
    outputs = family_dir / "mergekit"
    shutil.rmtree(outputs, ignore_errors=True)
    docs = []
    for name, recipe_path in jobs:
        docs.append({"name": name, **yaml.safe_load(recipe_path.read_text())})
    multi = family_dir / "multi.yaml"
    multi.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    proc = subprocess.run([str(MERGEKIT.parent / "mergekit-multi"), str(multi), "-I",
                           str(outputs), "--quiet", "--random-seed", "0"],
                          capture_output=True, text=True, cwd=ROOT)
    (family_dir / "mergekit-multi.log").write_text(proc.stdout + proc.stderr)
    errors: dict[str, str | None] = {}
    for name, recipe_path in jobs:
        out = outputs / name
        errors[name] = None
        if not (out / "config.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            errors[name] = run_mergekit_yaml(recipe_path, out)
    return errors


def run_merge3(recipe_path: Path, out: Path) -> tuple[str | None, float]:
    """What `merge3 merge RECIPE OUT` does (load_recipe + run_merge), in this process."""
    from merge3.errors import Merge3Error
    from merge3.merging import run_merge
    from merge3.recipe import load_recipe

    start = time.perf_counter()
    try:
        run_merge(load_recipe(recipe_path), out, progress=False, overwrite=True)
    except Merge3Error as err:
        return f"{type(err).__name__}: {err}", time.perf_counter() - start
    except Exception as err:  # a crash is a finding too: record it, keep going
        return f"internal error {type(err).__name__}: {err}", time.perf_counter() - start
    return None, time.perf_counter() - start


def prepare(case: Case, paths: Paths, dtype_mode: str, family_dir: Path) -> Path:
    recipe = case.recipe(paths)
    if dtype_mode == "fp32-math":
        recipe.update(dtype="float32", out_dtype="bfloat16")
    elif dtype_mode == "bf16-math":
        recipe["dtype"] = "bfloat16"
    case_dir = family_dir / f"{case.name}-{dtype_mode}"
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    recipe_path = case_dir / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return recipe_path


def run_family(family: str, paths: Paths, jobs: list[tuple[Case, str]],
               work: Path) -> list[Result]:
    family_dir = work / "runs" / family
    family_dir.mkdir(parents=True, exist_ok=True)
    prepared = [(case, mode, prepare(case, paths, mode, family_dir)) for case, mode in jobs]
    start = time.perf_counter()
    mk_errors = run_mergekit_all([(f"{c.name}-{m}", p) for c, m, p in prepared], family_dir)
    mk_seconds = time.perf_counter() - start
    results = []
    for case, mode, recipe_path in prepared:
        result = Result(family, case.name, mode, "FAIL")
        err3, result.seconds = run_merge3(recipe_path, recipe_path.parent / "merge3")
        errk = mk_errors[f"{case.name}-{mode}"]
        if err3 or errk:
            result.status = "ERROR"
            if err3:
                result.notes.append(f"merge3 failed: {err3[:200]}")
            if errk:
                result.notes.append(f"mergekit failed: {errk[:200]}")
        else:
            compare(load_all(recipe_path.parent / "merge3"),
                    load_all(family_dir / "mergekit" / f"{case.name}-{mode}"), case.exact,
                    result)
            if not case.exact:
                result.notes.append("values not compared (random masks)")
            if result.status == "FAIL" and mode == "bf16-math":
                result.status = "DIFF (bf16 math)"
        results.append(result)
        print(fmt_row(result), flush=True)
    print(f"{family}: mergekit {mk_seconds:.0f} s for {len(jobs)} recipes", flush=True)
    return results


def build_families(work: Path) -> dict[str, Paths]:
    from merge3.synthetic import build_family

    families = {}
    for arch in ("llama", "gpt2"):
        for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            root = work / "models" / f"{arch}-{dtype_name}"
            if not (root / "expert_3" / "config.json").exists():
                shutil.rmtree(root, ignore_errors=True)
                build_family(root, arch, experts=3, seed=7, dtype=dtype, hidden=64,
                             layers=LAYERS)
            families[f"{arch}-{dtype_name}"] = {
                name: str(root / name) for name in ("base", "expert_1", "expert_2", "expert_3")
            }
    return families


def versions() -> dict[str, str]:
    import merge3

    mk = subprocess.run(
        [str(MERGEKIT.parent / "python"), "-c",
         "import importlib.metadata as m, torch; print(m.version('mergekit'), torch.__version__)"],
        capture_output=True, text=True,
    ).stdout.split()
    cpu = next((line.split(":", 1)[1].strip() for line in
                subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if line.startswith("Model name")), platform.processor())
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "merge3"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"merge3": f"{merge3.__version__} (merge3/ at {commit})",
            "merge3 torch": torch.__version__,
            "mergekit": mk[0] if mk else "?", "mergekit torch": mk[1] if len(mk) > 1 else "?",
            "python": platform.python_version(), "cpu": f"{cpu}, {os.cpu_count()} cores"}


def fmt_row(r: Result) -> str:
    diff_frac = f"{r.differing} / {r.beyond} / {r.numel}" if r.numel else "-"
    return (f"| {r.family} | {r.case} | {r.dtype_mode} | **{r.status}** | {r.tensors} | "
            f"{r.max_abs:.2e} | {diff_frac} | "
            f"{'; '.join(r.notes)} |")


def write_readme(results: list[Result], info: dict[str, str], command: str) -> None:
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else "<!-- RESULTS -->\n<!-- /RESULTS -->\n"
    lines = [
        "<!-- RESULTS -->",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Machine and versions: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "| family | case | math dtype | result | tensors | max abs diff "
        "| elements differing / beyond tolerance / total | notes |",
        "|---|---|---|---|---|---|---|---|",
        *(fmt_row(r) for r in results),
        "",
        f"{sum(r.status == 'PASS' for r in results)} PASS, "
        f"{sum(r.status == 'FAIL' for r in results)} FAIL, "
        f"{sum(r.status == 'ERROR' for r in results)} ERROR, "
        f"{sum(r.status.startswith('DIFF') for r in results)} DIFF (bf16 math, expected: "
        f"convention 1) of {len(results)} runs.",
        "<!-- /RESULTS -->",
    ]
    head, _, rest = text.partition("<!-- RESULTS -->")
    _, _, tail = rest.partition("<!-- /RESULTS -->\n")
    readme.write_text(head + "\n".join(lines) + "\n" + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "data",
                        help="models and merge outputs (git-ignored)")
    parser.add_argument("--cases", nargs="*", help="run only these cases")
    parser.add_argument("--families", nargs="*", help="e.g. llama-fp32 gpt2-bf16")
    parser.add_argument("--no-readme", action="store_true", help="print, do not write README")
    args = parser.parse_args()
    if not MERGEKIT.exists():
        print(f"{MERGEKIT} is missing: run benchmarks/setup_mergekit.sh first.", file=sys.stderr)
        return 2
    families = build_families(args.work)
    results: list[Result] = []
    for family, paths in families.items():
        if args.families and family not in args.families:
            continue
        arch, dtype_name = family.split("-")
        # bf16 checkpoints: with float32 math (dtype: float32, out_dtype: bfloat16: both
        # tools do the same arithmetic), and for a few cases with `dtype: bfloat16`
        # (mergekit then computes in bfloat16; merge3 always computes in float32).
        jobs = []
        for case in CASES:
            if arch not in case.archs or (args.cases and case.name not in args.cases):
                continue
            if dtype_name == "fp32":
                jobs.append((case, "native"))
                continue
            jobs.append((case, "fp32-math"))
            if arch == "llama" and case.name in BF16_MATH_CASES:
                jobs.append((case, "bf16-math"))
        results += run_family(family, paths, jobs, args.work)
    info = versions()
    print(json.dumps(info))
    if not args.no_readme and not args.cases and not args.families:
        write_readme(results, info,
                     "nice -n 10 .venv/bin/python benchmarks/mergekit_parity/run.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
