"""The ``merge3`` command line.

Each package adds its verbs through ``register(subparsers)`` (irt, evaluators,
alignment, zoo, search); errors print as one line with the fix, tracebacks only
with ``--debug``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import os
import signal
import sys
import textwrap
import threading
import traceback
from pathlib import Path

from merge3 import __version__
from merge3.errors import Merge3Error

# Packages that contribute verbs; each module has `register(subparsers)`.
_PLUGINS = ("evaluators.cli", "irt.cli", "merge3.alignment.cli", "merge3.zoo.cli", "search.cli")


def _merge(args: argparse.Namespace) -> int:
    from merge3.merging import run_merge
    from merge3.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    out = run_merge(
        recipe,
        args.out_dir,
        out_shard_size=args.out_shard_size,
        overwrite=args.overwrite,
        allow_pickle=args.allow_pickle,
        progress=not args.quiet,
        device=args.device,
    )
    print(f"merged ({recipe.merge_method}) -> {out}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    from merge3.methods import METHODS

    if args.name:
        METHODS.get(args.name)  # an unknown name: "did you mean", not an empty listing
    for name in METHODS:
        method = METHODS.get(name)
        if args.name and name != args.name:
            continue
        per_model = ", ".join(f"{k}={v}" for k, v in method.per_model.items()) or "-"
        globals_ = ", ".join(f"{k}={v}" for k, v in method.global_params.items()) or "-"
        print(f"{name:17s} {method.pretty_name} — {method.description}")
        print(f"{'':17s} base: {method.base}; per model: {per_model}")
        print(f"{'':17s} global: {globals_}")
        if method.ranges:
            bounds = ", ".join(f"{k} in [{'-inf' if lo is None else lo}, "
                               f"{'inf' if hi is None else hi}]"
                               for k, (lo, hi) in method.ranges.items())
            print(f"{'':17s} ranges: {bounds}")
        print(f"{'':17s} paper: {method.reference}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from search.demo import run_demo, run_merge_demo  # an application on top: imported lazily

    if args.merges:
        return run_merge_demo(Path(args.out) / "merges", quiet=args.quiet)
    chosen = {"sampler": args.sampler} if args.sampler else {}  # else the demo's own
    return run_demo(Path(args.out), quiet=args.quiet, size=args.size,
                    population=args.population, generations=args.generations,
                    anchors=args.anchors, workers=args.workers, seed=args.seed, **chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="merge3",
        description="Model merging and evolutionary merge search with IRT fitness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `merge3 VERB --help` for a verb's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"merge3 {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    merge = verbs.add_parser(
        "merge",
        help="merge checkpoints as a YAML recipe says (mergekit-compatible)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            example:
              merge3 merge ties.yaml merged/ --out-shard-size 2GB

            ties.yaml:
              merge_method: ties
              base_model: models/base
              models:
                - model: models/math
                  parameters: {weight: 1.0, density: 0.2}
                - model: models/code
                  parameters: {weight: [0.5, 1.0], density: 0.2}   # gradient over layers
              parameters: {normalize: true, lambda: 1.0}
              dtype: bfloat16
            """),
    )
    merge.add_argument("recipe", help="the YAML recipe")
    merge.add_argument("out_dir", help="output model directory (written atomically)")
    merge.add_argument("--out-shard-size", default="5GB", help="max shard size (default 5GB)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output")
    merge.add_argument("--allow-pickle", action="store_true",
                       help="also read pytorch_model.bin (pickle) weights: only if you trust them")
    merge.add_argument("--device", default=None,
                       help="where the arithmetic runs, e.g. cuda or cuda:1 (mergekit's --cuda);"
                            " default: the CPU")
    merge.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    merge.set_defaults(func=_merge)

    methods = verbs.add_parser(
        "methods", help="list merge methods, their parameters and papers",
        epilog="example:\n  merge3 methods\n  merge3 methods tsv_m",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    methods.add_argument("name", nargs="?", help="show one method")
    methods.set_defaults(func=_methods)

    demo = verbs.add_parser(
        "demo", help="the main job: a merge search on the built-in zoo (README's first command)",
        epilog=textwrap.dedent("""\
            Builds the MiniLM zoo if needed (~15 min once), calibrates its item banks,
            then searches TSV-M merges of its experts with NSGA-II and mp-IRT fitness.
            A second run resumes or reuses what is done.

            example:
              merge3 demo                         # the full demo
              merge3 demo --size test             # the small test zoo, ~2 minutes
              merge3 demo --merges                # every merge method on tiny Llamas
            """),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--size", choices=("demo", "test"), default="demo", help="zoo size")
    demo.add_argument("--population", type=int, default=12)
    demo.add_argument("--generations", type=int, default=6)
    demo.add_argument("--anchors", type=int, default=30, help="IRT anchor items per task")
    demo.add_argument("--workers", type=int, default=2, help="Ray worker actors")
    demo.add_argument("--seed", type=int, default=0,
                      help="the search's seed (a seed other than 0 gets its own run directory)")
    demo.add_argument("--sampler", default=None,
                      help="a search sampler: nsga2, nsga3, ga, scalar, cmaes, random "
                           "(default: the demo's; docs/search.md says which and why)")
    demo.add_argument("--merges", action="store_true",
                      help="instead: every merge method on a generated tiny-Llama family")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    for module_name in _PLUGINS:
        if importlib.util.find_spec(module_name.rpartition(".")[0]) is None:
            continue
        try:
            found = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(module_name).register(verbs)
    return parser


# What the OS says, and what the user can do about it.
_OS_FIXES = {
    errno.ENOSPC: "free some space on that device, or write to another one.",
    errno.EDQUOT: "free some space within your quota, or write elsewhere.",
    errno.EROFS: "write to a writable location.",
    errno.EACCES: "check the permissions, or write elsewhere.",
    errno.EPERM: "check the permissions, or write elsewhere.",
    errno.ENOTDIR: "a component of the path is a file, not a directory: fix the path.",
    errno.EISDIR: "the path is a directory; give a file path.",
    errno.ELOOP: "the path is a symbolic link loop: fix or remove the link.",
    errno.ENAMETOOLONG: "use a shorter path.",
}


def os_error(err: OSError) -> Merge3Error:
    """An OS-level failure as a one-line error that names the path and the fix."""
    where = f" ({err.filename})" if err.filename else ""
    reason = err.strerror or type(err).__name__
    fix = _OS_FIXES.get(err.errno or -1, "check the path and the device, then retry.")
    return Merge3Error(f"{reason}{where}.", fix=fix)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # clean up exactly as on Ctrl-C: partial outputs are removed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            return int(args.func(args) or 0)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise os_error(err) from err
        except RecursionError:
            raise Merge3Error("An input is nested too deeply to read (recursion limit).",
                              fix="flatten the YAML/JSON input; recipes and configs are a "
                                  "few levels deep.") from None
    except BrokenPipeError:  # e.g. `merge3 methods | head`: the reader left, as it may
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except Merge3Error as err:
        if args.debug:
            traceback.print_exc()
        print(f"merge3: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("merge3: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # an unexpected failure: one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"merge3: internal error: {type(err).__name__}: {err} "
                  "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
