"""``merge3 search``, ``merge3 pareto`` and ``merge3 export``."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from merge3.errors import RecipeError

if TYPE_CHECKING:
    import optuna

    from search.config import SearchConfig

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
    from search.display import print_front
    from search.portable import redact_credentials
    from search.run import run_search

    config = load_config(args.config)
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    outcome = run_search(config, run_dir, resume=args.resume, address=args.address,
                         progress=not args.quiet, plan_check=not args.no_plan_check,
                         config_text=Path(args.config).read_text())
    objectives = config.objective_tasks
    print(f"\n{outcome.evaluated} candidates evaluated ({outcome.failed} failed), "
          f"{outcome.item_evaluations} item evaluations this session")
    print_front(outcome.front, objectives)
    uri = redact_credentials(outcome.tracking_uri)
    print(f"\nMLflow: mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
          f"  (experiment {outcome.experiment!r})")
    print(f"export a member: merge3 export {run_dir} --trial N OUT_DIR")
    return 0


def _open(run_dir: Path) -> tuple[SearchConfig, optuna.Study]:
    """The config and the study of a search's run directory."""
    import optuna
    import yaml

    from search.config import parse_config
    from search.rundir import RunState

    state = RunState(run_dir)
    if not state.started:
        raise RecipeError(f"{run_dir} holds no search.", fix="pass the run directory of a "
                          "`merge3 search` (it has search_state.json).")
    if "config" in state.data:  # the resolved config the search ran with
        config = parse_config(state.data["config"], str(state.path))
    else:
        config = parse_config(yaml.safe_load((run_dir / "config.yaml").read_text()),
                              str(run_dir / "config.yaml"))
    storage = config.strategy.storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=state.data.get("study", config.name), storage=storage)
    return config, study


def _pareto(args: argparse.Namespace) -> int:
    from search.display import print_front
    from search.records import finished_records, front_of

    config, study = _open(Path(args.run_dir))
    objectives = config.objective_tasks
    front = front_of(finished_records(study, objectives), objectives)
    if args.json:
        keys = ("trial", "generation", "values", "stderr", "parents", "mean_estimate")
        print(json.dumps([{k: r.to_json()[k] for k in keys} for r in front], indent=1))
    else:
        print_front(front, objectives)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from search.config import load_config
    from search.plan import (
        Machine,
        ModelShape,
        format_plan,
        parse_memory,
        plan_config,
        resolve_base,
        this_machine,
    )

    config = load_config(args.config)
    here = this_machine()
    gpu = (parse_memory(args.gpu, "--gpu") if args.gpu and args.gpu != "none"
           else None if args.gpu else here.gpu_bytes)
    host = parse_memory(args.host_ram, "--host-ram") if args.host_ram else here.host_bytes
    named = args.gpu or args.host_ram
    machine = Machine(gpu, host,
                      "the machine named" if named else "this machine")
    if args.params:
        model = ModelShape.llama(args.params, 4 if config.dtype in ("float32", "fp32") else 2)
    else:
        model = ModelShape.from_checkpoint(resolve_base(config))
    plan = plan_config(config, machine, model=model, local=config.workers.address is None)
    print(format_plan(plan, machine))
    return 0 if plan.fits else 3


def _search_heads(config) -> dict[str, str]:  # noqa: ANN001 - SearchConfig
    """Task -> expert directory of the heads a search scored its candidates with."""
    from merge3.models import resolve_model
    from search.workers import expert_heads

    experts = {}
    for name, reference in config.experts.items():
        try:
            experts[name] = str(resolve_model(reference))
        except RecipeError:
            continue
    return expert_heads(experts, config.tasks)


def _export(args: argparse.Namespace) -> int:
    from merge3.merging import run_merge
    from merge3.models import check_output_path, resolve_model
    from merge3.recipe import parse_recipe
    from search.lineage import ancestry
    from search.records import finished_records

    run_dir = Path(args.run_dir)
    config, study = _open(run_dir)
    records = {r.number: r for r in finished_records(study, config.objective_tasks)}
    record = records.get(args.trial)
    if record is None or not record.complete:
        raise RecipeError(f"Trial {args.trial} is not a finished candidate of {run_dir}.",
                          fix="pick a trial from `merge3 pareto RUN_DIR`.")
    # the search's base, its experts and its run directory survive an export, with
    # --overwrite too: later exports build on them
    recipe = parse_recipe(record.recipe)
    inputs = [m.model for m in recipe.models] + ([recipe.base_model] if recipe.base_model
                                                 else [])
    for reference in [config.base_model, *config.experts.values()]:
        if reference:
            try:
                inputs.append(str(resolve_model(reference)))
            except RecipeError:  # gone since: nothing there to protect
                continue
    check_output_path(args.out_dir, [*inputs, run_dir])
    manifest = {
        "format": "merge3-export-v1",
        "search": config.name,
        "trial": args.trial,
        "recipe": record.recipe,
        "genome": record.genome,
        "estimates": record.estimates,
        "stderr": record.stderr,
        "estimator": config.fitness.estimator,
        "lineage": {str(t): parents for t, parents in ancestry(records, [args.trial]).items()},
    }
    heads = _search_heads(config)
    manifest["heads"] = heads
    out = run_merge(recipe, args.out_dir, overwrite=args.overwrite,
                    progress=not args.quiet)
    for task, source in heads.items():  # the heads the search scored this candidate with
        (out / "heads").mkdir(exist_ok=True)
        shutil.copy2(Path(source) / "heads" / f"{task}.safetensors",
                     out / "heads" / f"{task}.safetensors")
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
    search.add_argument("--no-plan-check", action="store_true",
                        help="start even if `merge3 plan` says the workers do not fit")
    search.set_defaults(func=_search)

    plan = subparsers.add_parser(
        "plan", help="predicted memory per worker and seconds per candidate of a search",
        epilog="example:\n  merge3 plan search.yaml --gpu 24GB --host-ram 64GB\n"
               "  merge3 plan search.yaml --params 7B --gpu 24GB   # a synthetic 7B Llama\n"
               "exit status 3: the search does not fit (the fix is printed)",
        formatter_class=fmt)
    plan.add_argument("config", help="the search YAML")
    plan.add_argument("--gpu", help="GPU memory per device, e.g. 24GB (GiB); 'none': CPU "
                      "workers (default: this machine's)")
    plan.add_argument("--host-ram", help="host memory, e.g. 64GB (default: this machine's)")
    plan.add_argument("--params", help="plan a synthetic Llama of this size instead of the "
                      "config's models: 1.1B, 7B, 13B or 70B")
    plan.set_defaults(func=_plan)

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
