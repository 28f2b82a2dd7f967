"""`merge3 irt ...`: calibrate, anchors, estimate, validate (argparse, wired by merge3.cli).

The main CLI calls :func:`register` with its subparsers; every leaf parser sets
``func=handler`` and ``handler(args) -> int`` returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Handlers raise merge3 errors; `merge3`'s main prints them as one line and exits 2."""
    return handler


def _csv_ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _csv_strs(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _dims(text: str) -> int | None:
    return None if text == "auto" else int(text)


def _names(pairs: list[str] | None) -> dict[str, str]:
    """``--name OLD=NEW`` (repeatable, or comma-separated) as {old: new}."""
    from irt.errors import IRTError

    names: dict[str, str] = {}
    for pair in (p.strip() for text in pairs or [] for p in text.split(",") if p.strip()):
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise IRTError(f"--name {pair!r} is not OLD=NEW.",
                           fix="write --name __srv__models__gpt2_a=gpt2_a (an lm-eval output "
                               "folder, pretrained path or model id = the id to use).")
        names[old.strip()] = new.strip()
    return names


def _load(args: argparse.Namespace):  # noqa: ANN202 - ResponseMatrix
    from irt.loaders import load_responses

    return load_responses(args.responses, metric=args.metric, filter_name=args.filter,
                          names=_names(getattr(args, "name", None)) or None)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", default=None,
                   help="lm-eval metric field (default: the record's first metric, e.g. acc)")
    p.add_argument("--filter", default=None,
                   help="lm-eval filter name to keep (default: the first one seen)")


# ---------------------------------------------------------------------- handlers
@_guard
def _calibrate(args: argparse.Namespace) -> int:
    from irt.calibrate import calibrate

    responses = _load(args)
    if args.per_task:
        return _calibrate_per_task(args, responses)
    bank = calibrate(responses, model=args.model, dims=args.dims, engine=args.engine,
                     epochs=args.epochs, seed=args.seed)
    bank.save(args.out)
    if args.mlflow_tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.mlflow_tracking_uri)
        with mlflow.start_run(run_name="irt-calibrate"):
            mlflow.log_params({k: bank.metadata[k] for k in ("model", "engine", "dims",
                                                             "n_models", "n_items")})
            bank.log_to_mlflow(args.out)
    print(f"item bank {args.out}: {bank.metadata['n_models']} models × {bank.n_items} items, "
          f"{args.model} D = {bank.dims}, engine {args.engine}, {bank.metadata['seconds']} s")
    print(_flag_line(bank))
    return 0


def _flag_line(bank) -> str:  # noqa: ANN001 - ItemBank
    """How many items are flagged and which (also in bank.json's "flagged", items.csv)."""
    return "flagged: " + bank.flags.summary(bank.item_ids, bank.n_items)


def _calibrate_per_task(args: argparse.Namespace, responses) -> int:  # noqa: ANN001
    """One bank per task under ``--out`` (``OUT/<task>/``): the layout a search's
    ``fitness.item_bank`` reads. Items without a task are refused, not pooled."""
    import numpy as np

    from irt.calibrate import calibrate
    from irt.errors import IRTError

    tasks = responses.tasks()
    if "" in tasks:
        first = responses.item_ids[responses.item_tasks.index("")]
        raise IRTError(f"--per-task: item {first!r} has no task.",
                       fix="use response files that name each item's task (task/item ids, "
                           "lm-eval or merge3 eval logs), or calibrate without --per-task.")
    for task in tasks:
        cols = np.flatnonzero(np.array(responses.item_tasks) == task)
        bank = calibrate(responses.select_items(cols), model=args.model, dims=args.dims,
                         engine=args.engine, epochs=args.epochs, seed=args.seed)
        bank.save(args.out / task)
        print(f"item bank {args.out / task}: {bank.metadata['n_models']} models × "
              f"{bank.n_items} items, {args.model} D = {bank.dims}, engine {args.engine}, "
              f"{bank.metadata['seconds']} s")
        print(f"  {_flag_line(bank)}")
    return 0


@_guard
def _anchors(args: argparse.Namespace) -> int:
    from irt.anchors import select_anchors
    from irt.bank import load_bank

    bank = load_bank(args.bank)
    anchors = select_anchors(bank, args.k, args.method, args.seed)
    anchors.save(args.out)
    print(f"{anchors.k} anchors ({args.method}, seed {args.seed}) written to {args.out}")
    return 0


@_guard
def _estimate(args: argparse.Namespace) -> int:
    from irt.anchors import load_anchors
    from irt.bank import load_bank
    from irt.estimators import estimate_accuracy

    bank = load_bank(args.bank)
    responses = _load(args)
    anchors = load_anchors(args.anchors, bank) if args.anchors else None
    endpoints = None
    if args.endpoints:
        try:
            endpoints = json.loads(Path(args.endpoints).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            from irt.errors import IRTError

            raise IRTError(f"{args.endpoints}: cannot read endpoints ({err}).",
                           fix='write {"merged-model": ["parent-a", "parent-b"]}.') from None
    results = estimate_accuracy(bank, responses, args.estimator, anchors, endpoints,
                                prior_inflation=args.prior_inflation)
    if args.json:
        print(json.dumps([{"model": r.model, "estimator": r.estimator, "estimate": r.estimate,
                           "stderr": r.stderr, "items_used": r.items_used} for r in results],
                         indent=1))
        return 0
    width = max([len("model"), *(len(r.model) for r in results)])
    print(f"{'model':<{width}}  estimator  estimate  stderr_pp  items")
    for r in results:
        print(f"{r.model:<{width}}  {r.estimator:<9}  {100 * r.estimate:7.2f}%  "
              f"{100 * r.stderr:9.2f}  {r.items_used:5d}")
    return 0


@_guard
def _validate(args: argparse.Namespace) -> int:
    from irt.report import write_report
    from irt.validate import ValidationConfig, validate

    responses = _load(args)
    config = ValidationConfig(ks=args.ks, selectors=args.selectors, estimators=args.estimators,
                              seeds=args.seeds, heldout_fraction=args.heldout_fraction,
                              model=args.model, dims=args.dims, engine=args.engine,
                              epochs=args.epochs, recalibration=not args.no_recalibration)
    rows, info = validate(responses, config, progress=lambda m: print(m, flush=True))
    command = args.command_line or "merge3 irt validate " + " ".join(map(str, args.responses))
    machine = args.machine or f"{platform.machine()}, {platform.python_version()}"
    report = write_report(rows, info, args.out, args.title, command, machine)
    print(f"report: {report}")
    return 0


# ---------------------------------------------------------------------- parsers
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``irt`` with its verbs calibrate, anchors, estimate, validate."""
    from irt.anchors import DEFAULT_SELECTOR, SELECTORS
    from irt.calibrate import DEFAULT_ENGINE, ENGINES
    from irt.estimators import DEFAULT_ESTIMATOR, ESTIMATORS

    irt = subparsers.add_parser(
        "irt", help="IRT item banks: calibrate, select anchors, estimate accuracy, validate",
        description="Cheap evaluation with item response theory (tinyBenchmarks, MERGE³).",
        formatter_class=_RAW,
        epilog="example:\n  merge3 irt calibrate runs/eval --out bank/\n"
               "  merge3 irt anchors bank/ --k 50 --out anchors.json\n"
               "  merge3 irt estimate bank/ runs/new_model --anchors anchors.json")
    verbs = irt.add_subparsers(dest="irt_command", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser(
        "calibrate", help="fit an item bank to past model responses", formatter_class=_RAW,
        description="Fit a 2PL or σ(α·θ − β) item bank to responses (long CSV/parquet "
                    "tables, lm-eval samples_*.jsonl, merge3 eval logs).",
        epilog="example:\n  merge3 irt calibrate runs/eval responses.csv --out bank/ "
               "--engine py-irt --dims auto")
    p.add_argument("responses", nargs="+", type=Path, help="response files or directories")
    p.add_argument("--out", required=True, type=Path, help="item bank directory to write")
    p.add_argument("--model", choices=("mirt", "2pl"), default="mirt")
    p.add_argument("--dims", type=_dims, default=None,
                   help="dimension D or 'auto' (chosen on held-out models; default)")
    p.add_argument("--engine", choices=ENGINES.names(), default=DEFAULT_ENGINE)
    p.add_argument("--epochs", type=int, default=2000, help="py-irt SVI epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mlflow-tracking-uri", default=None,
                   help="log the bank as an MLflow artifact to this tracking URI")
    p.add_argument("--per-task", action="store_true",
                   help="one bank per task, OUT/<task>/ (the folder a search's "
                        "fitness.item_bank takes), from multi-task responses")
    p.add_argument("--name", action="append", default=None, metavar="OLD=NEW",
                   help="rename a model (repeatable or comma-separated): OLD is an lm-eval "
                        "output folder, a pretrained path or a model id. lm-eval models are "
                        "named after their output folder (__srv__models__gpt2_a -> gpt2_a, "
                        "as merge3 eval names them)")
    _add_input_options(p)
    p.set_defaults(func=_calibrate)

    p = verbs.add_parser(
        "anchors", help="select k anchor items from a bank", formatter_class=_RAW,
        description="Select anchor items and their weights (deterministic under --seed).",
        epilog="example:\n  merge3 irt anchors bank/ --k 50 --method kmeans-correctness "
               "--out anchors.json")
    p.add_argument("bank", type=Path)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--method", choices=SELECTORS.names(), default=DEFAULT_SELECTOR,
                   help=f"default {DEFAULT_SELECTOR}: the best at 50 anchors in benchmarks/irt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_anchors)

    p = verbs.add_parser(
        "estimate", help="estimate models' accuracy from their anchor responses",
        formatter_class=_RAW,
        description="Estimate each model's accuracy on the whole bank, with a standard "
                    "error. Only the anchor items of RESPONSES are read.",
        epilog="example:\n  merge3 irt estimate bank/ runs/merged --anchors anchors.json "
               "--estimator gp-irt --json")
    p.add_argument("bank", type=Path)
    p.add_argument("responses", nargs="+", type=Path)
    p.add_argument("--estimator", choices=ESTIMATORS.names(), default=DEFAULT_ESTIMATOR,
                   help=f"default {DEFAULT_ESTIMATOR}: the best at 50 anchors in "
                        "benchmarks/irt (random and strongest held-out models)")
    p.add_argument("--anchors", type=Path, default=None,
                   help="anchors.json (default: every bank item answered)")
    p.add_argument("--endpoints", type=Path, default=None,
                   help="JSON {model: [parent models in the bank]} for the estimators that "
                        "use endpoints: "
                        + ", ".join(n for n in ESTIMATORS if ESTIMATORS.get(n).uses_endpoints))
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--prior-inflation", type=float, default=1.0,
                   help="scale the population prior's covariance on abilities (e.g. 4 for "
                        "models stronger than the bank; see benchmarks/irt/README.md)")
    _add_input_options(p)
    p.set_defaults(func=_estimate)

    p = verbs.add_parser(
        "validate", help="measure estimator fidelity on held-out models",
        formatter_class=_RAW,
        description="Calibrate on training models and report MAE (pp), Spearman and "
                    "Kendall on held-out models for every estimator × selector × k, on a "
                    "random split and on the strongest models, with the recalibration "
                    "effect. Writes report.md, summary.csv, results.csv and mae_vs_k.png.",
        epilog="example:\n  merge3 irt validate responses.csv --out benchmarks/irt/sklearn "
               "--ks 10,20,50,100 --seeds 0,1,2")
    p.add_argument("responses", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--ks", type=_csv_ints, default=(10, 20, 50, 100))
    p.add_argument("--seeds", type=_csv_ints, default=(0, 1, 2))
    p.add_argument("--selectors", type=_csv_strs, default=SELECTORS.names(),
                   help=f"comma-separated (default: all of {','.join(SELECTORS)})")
    p.add_argument("--estimators", type=_csv_strs, default=ESTIMATORS.names(),
                   help=f"comma-separated (default: all of {','.join(ESTIMATORS)})")
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--model", choices=("mirt", "2pl"), default="mirt")
    p.add_argument("--dims", type=_dims, default=None)
    p.add_argument("--engine", choices=ENGINES.names(), default=DEFAULT_ENGINE)
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--no-recalibration", action="store_true")
    p.add_argument("--title", default="IRT estimator fidelity on held-out models")
    p.add_argument("--command-line", default=None, help="command to print in the report")
    p.add_argument("--machine", default=None, help="machine description for the report")
    _add_input_options(p)
    p.set_defaults(func=_validate)
