"""``merge3 search``, ``merge3 pareto`` and ``merge3 export``."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from merge3.errors import RecipeError

_SEARCH_EXAMPLE = textwrap.dedent("""\
    example:
      merge3 search search.yaml --run-dir runs/my-search
      merge3 search search.yaml --run-dir runs/my-search --resume      # after a kill
      merge3 search search.yaml --address 10.0.0.1:6379                # a Ray cluster

    search.yaml:
      name: minilm-tsv
      base_model: zoo:minilm/base
      experts: {topic: zoo:minilm/expert/topic, sentiment: zoo:minilm/expert/sentiment}
      method: tsv_m
      genome:
        weight: {per: model, layer_groups: 2, low: 0.0, high: 1.5}
        alpha: {low: 0.5, high: 2.0}
      tasks: {topic: tasks/topic.yaml, sentiment: tasks/sentiment.yaml}
      fitness: {estimator: mp-irt, item_bank: banks/, anchors: 30}
      strategy: {sampler: nsga2, population: 8, generations: 4, seed: 0}
      workers: {count: 2, cpus: 1}
    """)


def _search(args: argparse.Namespace) -> int:
    from search.config import load_config
    from search.run import run_search

    config = load_config(args.config)
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    outcome = run_search(config, run_dir, resume=args.resume, address=args.address,
                         progress=not args.quiet,
                         config_text=Path(args.config).read_text())
    objectives = config.objective_tasks
    print(f"\n{outcome.evaluated} candidates evaluated ({outcome.failed} failed), "
          f"{outcome.item_evaluations} item evaluations this session")
    _print_front(outcome.front, objectives)
    from search.tracking import redact_credentials

    uri = redact_credentials(outcome.tracking_uri)
    print(f"\nMLflow: mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
          f"  (experiment {outcome.experiment!r})")
    print(f"export a member: merge3 export {run_dir} --trial N OUT_DIR")
    return 0


def _print_front(front: list[dict[str, Any]], objectives: list[str]) -> None:
    """The front as a table that fits the terminal: accuracies in %, ± one s.e.

    With many objectives the columns are T1, T2, ... (a legend follows) and each cell
    puts its standard error on a second line.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    labels, wide = task_labels(objectives, console.width)
    table = Table(title="Pareto front: estimated accuracy % ± s.e., best mean first",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("trial", justify="right")
    table.add_column("gen", justify="right")
    for label in labels:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("mean", justify="right", style="bold")
    table.add_column("parents", justify="right", no_wrap=True)
    joiner = "±" if wide else "\n[dim]±"
    for row in sorted(front, key=lambda r: -r["mean_estimate"]):
        table.add_row(str(row["trial"]), str(row["generation"]),
                      *[f"{100 * row['values'][t]:.1f}{joiner}"
                        f"{100 * row['stderr'].get(t, 0):.1f}" + ("" if wide else "[/dim]")
                        for t in objectives],
                      f"{100 * row['mean_estimate']:.1f}",
                      ",".join(map(str, row["parents"] or [])) or "-")
    console.print(table)
    if not wide:
        console.print(task_legend(labels, objectives), style="dim")


def task_labels(objectives: list[str], width: int) -> tuple[list[str], bool]:
    """Column labels for per-task tables: the task names when a ``width``-column terminal
    fits them (True), else T1, T2, ... (False; print :func:`task_legend` below)."""
    if sum(max(len(t), 8) + 3 for t in objectives) + 32 <= width:
        return list(objectives), True
    return [f"T{i}" for i in range(1, len(objectives) + 1)], False


def task_legend(labels: list[str], objectives: list[str]) -> str:
    return "  " + "; ".join(f"{label} {name}" for label, name in zip(labels, objectives))


def _open(run_dir: Path):
    import optuna
    import yaml

    from search.config import parse_config
    from search.run import STATE_FILE

    if not (run_dir / STATE_FILE).exists():
        raise RecipeError(f"{run_dir} holds no search.", fix="pass the run directory of a "
                          "`merge3 search` (it has search_state.json).")
    config = parse_config(yaml.safe_load((run_dir / "config.yaml").read_text()),
                          str(run_dir / "config.yaml"))
    state = json.loads((run_dir / STATE_FILE).read_text())
    storage = config.strategy.storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=state.get("study", config.name), storage=storage)
    return config, study


def _pareto(args: argparse.Namespace) -> int:
    from search.run import finished_records, front_of

    config, study = _open(Path(args.run_dir))
    objectives = config.objective_tasks
    front = front_of(finished_records(study, objectives), objectives)
    if args.json:
        print(json.dumps([{k: r[k] for k in ("trial", "generation", "values", "stderr",
                                             "parents", "mean_estimate")} for r in front],
                         indent=1))
    else:
        _print_front(front, objectives)
    return 0


def _ancestry(records: dict[int, dict[str, Any]], trial: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    stack = [trial]
    while stack:
        number = stack.pop()
        if str(number) in out or number not in records:
            continue
        parents = records[number]["parents"] or []
        out[str(number)] = parents
        stack.extend(parents)
    return out


def _export(args: argparse.Namespace) -> int:
    from merge3.merging import run_merge
    from merge3.recipe import parse_recipe
    from search.run import finished_records

    run_dir = Path(args.run_dir)
    config, study = _open(run_dir)
    records = {r["trial"]: r for r in finished_records(study, config.objective_tasks)}
    record = records.get(args.trial)
    if record is None or record["state"] != "COMPLETE":
        raise RecipeError(f"Trial {args.trial} is not a finished candidate of {run_dir}.",
                          fix="pick a trial from `merge3 pareto RUN_DIR`.")
    manifest = {
        "format": "merge3-export-v1",
        "search": config.name,
        "trial": args.trial,
        "recipe": record["recipe"],
        "genome": record["genome"],
        "estimates": record["values"],
        "stderr": record["stderr"],
        "estimator": config.fitness.estimator,
        "lineage": _ancestry(records, args.trial),
    }
    out = run_merge(parse_recipe(record["recipe"]), args.out_dir, overwrite=args.overwrite,
                    progress=not args.quiet)
    (out / "merge3_manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"exported trial {args.trial} -> {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    search = subparsers.add_parser("search", help="run an evolutionary merge search",
                                   epilog=_SEARCH_EXAMPLE, formatter_class=fmt)
    search.add_argument("config", help="the search YAML")
    search.add_argument("--run-dir", help="where the study, MLflow store and fronts go "
                        "(default runs/<name>)")
    search.add_argument("--resume", action="store_true", help="continue a killed search")
    search.add_argument("--address", help="a Ray cluster to join (default: a local Ray)")
    search.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    search.set_defaults(func=_search)

    pareto = subparsers.add_parser("pareto", help="print the Pareto front of a search",
                                   epilog="example:\n  merge3 pareto runs/my-search --json",
                                   formatter_class=fmt)
    pareto.add_argument("run_dir")
    pareto.add_argument("--json", action="store_true", help="JSON instead of a table")
    pareto.set_defaults(func=_pareto)

    export = subparsers.add_parser(
        "export", help="write a searched merge as a checkpoint with its manifest",
        epilog="example:\n  merge3 export runs/my-search --trial 17 merged/",
        formatter_class=fmt)
    export.add_argument("run_dir")
    export.add_argument("--trial", type=int, required=True)
    export.add_argument("out_dir")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("-q", "--quiet", action="store_true")
    export.set_defaults(func=_export)
