"""Wall time and peak memory of `merge3 merge` vs `mergekit-yaml` on ~258M-parameter models.

    benchmarks/setup_mergekit.sh
    nice -n 10 .venv/bin/python benchmarks/merge_speed/build_data.py
    nice -n 10 .venv/bin/python benchmarks/merge_speed/run.py --repeats 3

Each run is a fresh process of the tool's own CLI (same recipe file, same output shard
size, same output dtype, progress bars off); its wall time is measured around the
process and its peak RSS is the ``ru_maxrss`` that ``os.wait4`` reports for that child.
The tools alternate (merge3 first on even repeats, mergekit first on odd ones) and the
input files are read once beforehand, so both find them in the page cache. The table
(medians, and every run) goes to ``benchmarks/merge_speed/README.md`` between the
RESULTS markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MERGE3 = Path(sys.executable).parent / "merge3"
MERGEKIT = ROOT / ".venv-mergekit" / "bin" / "mergekit-yaml"
# Same bytes for both: mergekit's parser reads "200M" as 200·10⁶ (it rejects "200MB"),
# merge3 reads "200MB" as 200·10⁶. The inputs are sharded at 200 MB too.
SHARD = {"merge3": "200MB", "mergekit": "200M"}


def recipes(data: Path, math_dtype: str) -> dict[str, dict]:
    """The two recipes, written as a mergekit user would (the same file for both tools)."""
    dtype = ({"dtype": "bfloat16"} if math_dtype == "bf16"
             else {"dtype": "float32", "out_dtype": "bfloat16"})
    models = [str(data / n) for n in ("base", "expert_1", "expert_2")]
    return {
        "task_arithmetic": {
            "merge_method": "task_arithmetic", "base_model": models[0],
            "models": [{"model": models[1], "parameters": {"weight": 0.6}},
                       {"model": models[2], "parameters": {"weight": 0.4}}],
            **dtype,
        },
        "ties": {
            "merge_method": "ties", "base_model": models[0],
            "models": [{"model": models[1], "parameters": {"weight": 0.6, "density": 0.5}},
                       {"model": models[2], "parameters": {"weight": 0.4, "density": 0.5}}],
            **dtype,
        },
    }


@dataclass
class Run:
    method: str
    tool: str
    repeat: int
    seconds: float
    peak_rss_gb: float
    ok: bool
    cpu_seconds: float = 0.0  # user + system: less sensitive than wall time to a busy machine


def command(tool: str, recipe: Path, out: Path) -> list[str]:
    if tool == "merge3":
        return [str(MERGE3), "merge", str(recipe), str(out), "--out-shard-size",
                SHARD["merge3"], "--quiet"]
    return [str(MERGEKIT), str(recipe), str(out), "--out-shard-size", SHARD["mergekit"],
            "--quiet"]


def measure(cmd: list[str], log: Path) -> tuple[float, float, bool, float]:
    """Wall seconds, peak RSS (GB, this child and its waited-for children), success and
    CPU seconds (user + system)."""
    with open(log, "w") as handle:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss * 1024 / 1e9, proc.returncode == 0, cpu  # maxrss: KiB


def warm_cache(data: Path) -> None:
    for file in sorted(data.rglob("*.safetensors")):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass


def machine() -> dict[str, str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                if line.startswith("Model name")), platform.processor())
    mk = subprocess.run(
        [str(MERGEKIT.parent / "python"), "-c",
         "import importlib.metadata as m, torch; print(m.version('mergekit'), torch.__version__)"],
        capture_output=True, text=True,
    ).stdout.split()
    import torch

    import merge3

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "merge3"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "merge3"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
            "cpu": cpu, "ram": f"{mem:.0f} GiB", "python": platform.python_version(),
            "merge3": f"{merge3.__version__} (merge3/ at {commit}"
                      f"{' + local edits' if dirty else ''})",
            "torch": torch.__version__,
            "mergekit": mk[0] if mk else "?", "mergekit torch": mk[1] if len(mk) > 1 else "?"}


def summary_rows(runs: list[Run]) -> list[str]:
    rows = []
    for method in dict.fromkeys(r.method for r in runs):
        med = {}
        for tool in ("merge3", "mergekit"):
            sel = [r for r in runs if r.method == method and r.tool == tool and r.ok]
            if sel:
                med[tool] = (statistics.median(r.seconds for r in sel),
                             statistics.median(r.peak_rss_gb for r in sel), len(sel),
                             statistics.median(r.cpu_seconds for r in sel))
        if len(med) < 2:
            rows.append(f"| {method} | failed: see runs | | | | | | | |")
            continue
        (t3, m3, n3, c3), (tk, mk, nk, ck) = med["merge3"], med["mergekit"]
        cpu = f"{c3:.0f} / {ck:.0f} ({c3 / ck:.2f}×)" if ck else "not recorded"
        rows.append(f"| {method} | {t3:.1f} | {tk:.1f} | **{t3 / tk:.2f}×** | {m3:.2f} | "
                    f"{mk:.2f} | **{m3 / mk:.2f}×** | {cpu} | {n3} / {nk} |")
    return rows


def write_readme(runs: list[Run], info: dict[str, str], command_line: str,
                 math_dtype: str) -> None:
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else "<!-- RESULTS -->\n<!-- /RESULTS -->\n"
    marker, end = f"<!-- RESULTS {math_dtype} -->", f"<!-- /RESULTS {math_dtype} -->"
    if marker not in text:
        text += f"\n{marker}\n{end}\n"
    lines = [
        marker,
        f"`{command_line}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "| method | merge3 s | mergekit s | time merge3/mergekit | merge3 peak RSS GB "
        "| mergekit peak RSS GB | RSS merge3/mergekit | CPU s merge3 / mergekit | runs |",
        "|---|---|---|---|---|---|---|---|---|",
        *summary_rows(runs),
        "",
        "Every run (seconds, peak RSS GB): "
        + "; ".join(f"{r.method}/{r.tool}#{r.repeat} {r.seconds:.1f} s {r.peak_rss_gb:.2f} GB"
                    + ("" if r.ok else " FAILED") for r in runs) + ".",
        end,
    ]
    head, _, rest = text.partition(marker)
    _, _, tail = rest.partition(end + "\n")
    readme.write_text(head + "\n".join(lines) + "\n" + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=["task_arithmetic", "ties"])
    parser.add_argument("--math", choices=["bf16", "fp32"], default="bf16",
                        help="bf16: `dtype: bfloat16` (the usual recipe; mergekit then "
                        "computes in bf16, merge3 in fp32); fp32: `dtype: float32, "
                        "out_dtype: bfloat16` (both compute in fp32)")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--from-json", type=Path,
                        help="rewrite the README table from a saved runs-*.json")
    args = parser.parse_args()
    for tool in (MERGE3, MERGEKIT):
        if not tool.exists():
            print(f"{tool} is missing (benchmarks/setup_mergekit.sh, pip install -e .).",
                  file=sys.stderr)
            return 2
    if not (args.data / "expert_2" / "config.json").exists():
        print("no checkpoints: run benchmarks/merge_speed/build_data.py first", file=sys.stderr)
        return 2
    work = args.data / "runs"
    work.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        runs = [Run(**r) for r in json.loads(args.from_json.read_text())]
        repeats = 1 + max(r.repeat for r in runs)
        write_readme(runs, machine(), "nice -n 10 .venv/bin/python benchmarks/merge_speed/run.py "
                     f"--repeats {repeats} --math {args.math}", args.math)
        return 0
    warm_cache(args.data)
    runs: list[Run] = []
    all_recipes = recipes(args.data.resolve(), args.math)
    for method in args.methods:
        recipe_path = work / f"{method}-{args.math}.yaml"
        recipe_path.write_text(yaml.safe_dump(all_recipes[method], sort_keys=False))
        for repeat in range(args.repeats):
            order = ("merge3", "mergekit") if repeat % 2 == 0 else ("mergekit", "merge3")
            for tool in order:
                out = work / f"out-{method}-{tool}"
                shutil.rmtree(out, ignore_errors=True)
                seconds, rss, ok, cpu = measure(command(tool, recipe_path, out),
                                                work / f"{method}-{tool}-{repeat}.log")
                runs.append(Run(method, tool, repeat, seconds, rss, ok, cpu))
                print(json.dumps(asdict(runs[-1])), flush=True)
    info = machine()
    print("\n".join(summary_rows(runs)))
    (work / f"runs-{args.math}.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
    if not args.no_readme:
        write_readme(runs, info, "nice -n 10 .venv/bin/python benchmarks/merge_speed/run.py "
                     f"--repeats {args.repeats} --math {args.math}", args.math)
    return 0


if __name__ == "__main__":
    sys.exit(main())
