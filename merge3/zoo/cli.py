"""``merge3 zoo build`` and ``merge3 zoo report``."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

__all__ = ["register"]

ZOO_SIZES = ("test", "demo", "bench")  # merge3.zoo.build_config.SIZES (not imported: torch)


def _build(args: argparse.Namespace) -> int:
    import torch

    from merge3.zoo.build import build_zoo

    torch.set_num_threads(1)  # the parent only tokenises and fits probes
    out = build_zoo(args.size, args.out, force=args.force, progress=not args.quiet,
                    workers_count=args.workers)
    recipe = json.loads((out / "recipe.json").read_text())
    timings = recipe.get("timings", {})
    if timings and not args.quiet:
        print("build times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    print(f"zoo ({args.size}) -> {out}")
    if not args.quiet:
        print((out / "report.md").read_text())
    return 0


def _report(args: argparse.Namespace) -> int:
    from merge3.zoo.build import zoo_dir_for
    from merge3.zoo.errors import ZooNotBuiltError
    from merge3.zoo.report import compute_report, format_report

    zoo_dir = zoo_dir_for(args.size, args.zoo)
    if not (zoo_dir / "population.json").is_file():
        flag = "" if args.size == "demo" else f" --size {args.size}"
        raise ZooNotBuiltError(f"No built zoo in {zoo_dir}.",
                               fix=f"run `merge3 zoo build{flag}` first.")
    report = compute_report(zoo_dir)
    (zoo_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``zoo build`` and ``zoo report`` to the ``merge3`` command line."""
    zoo = subparsers.add_parser(
        "zoo", help="build the offline MiniLM zoo (experts, item pools, past responses)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            example:
              merge3 zoo build --size test      # 2 tasks, small: for tests
              merge3 zoo build                  # the demo zoo: 6 tasks, 60+ models
              merge3 zoo report
            """))
    verbs = zoo.add_subparsers(dest="zoo_verb", metavar="VERB")
    zoo.set_defaults(func=lambda args: (zoo.print_help(), 2)[1])

    build = verbs.add_parser(
        "build", help="build (or reuse) the zoo in the cache",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            The zoo goes to $MERGE3_HOME/minilm/<size> (default ~/.cache/merge3) and is
            rebuilt only when its recipe changes (or with --force).

            example:
              nice -n 10 merge3 zoo build --size demo
              merge3 zoo build --size test --out /tmp/zoo-test
            """))
    build.add_argument("--size", choices=ZOO_SIZES, default="demo",
                       help="test: 2 tasks, small; demo: 6 tasks (default); bench: the demo "
                            "zoo with 1000 test items for word_order and text_source "
                            "(benchmarks/search_cost)")
    build.add_argument("--out", type=Path, default=None,
                       help="build into DIR instead of the cache")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--workers", type=int, default=None,
                       help="worker processes, one torch thread each (default 2)")
    build.add_argument("--quiet", action="store_true", help="no progress bars or report")
    build.set_defaults(func=_build)

    report = verbs.add_parser(
        "report", help="accuracy of base, experts and merges (table, JSON beside the zoo)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            example:
              merge3 zoo report
              merge3 zoo report --size test --json
            """))
    report.add_argument("--size", choices=ZOO_SIZES, default="demo")
    report.add_argument("--zoo", type=Path, default=None, help="a zoo directory (--out of build)")
    report.add_argument("--json", action="store_true", help="print the JSON instead of tables")
    report.set_defaults(func=_report)
