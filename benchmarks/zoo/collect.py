"""Write a built zoo's build times and report as a Markdown section (for README.md).

    MERGE3_HOME=... python benchmarks/zoo/collect.py --size demo --command "..." > out.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from merge3.zoo.build import zoo_dir_for
from merge3.zoo.report import compute_report, format_report


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.machine()}, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="demo")
    parser.add_argument("--zoo", type=Path, default=None)
    parser.add_argument("--command", default="")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    zoo = zoo_dir_for(args.size, args.zoo)
    recipe = json.loads((zoo / "recipe.json").read_text())
    timings = recipe["timings"]
    lines = [f"### `{args.size}` zoo", "", f"- command: `{args.command}`",
             f"- machine: {machine()}"]
    if args.note:
        lines.append(f"- {args.note}")
    lines += ["", "| phase | wall (s) |", "|---|---|"]
    cpu = {k: v for k, v in timings.items() if k.startswith(("worker", "parent"))}
    lines += [f"| {k} | {v} |" for k, v in timings.items() if k not in cpu]
    if cpu:
        lines += ["", "| CPU time | s |", "|---|---|"] + [f"| {k} | {v} |" for k, v in cpu.items()]
        busy = sum(cpu.values())
        lines += ["", f"CPU seconds in all: {busy:.0f}; on an idle 2-core machine the build "
                  f"needs about {busy / 2:.0f} s of wall time plus process start-up."]
    lines += ["", format_report(compute_report(zoo))]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
