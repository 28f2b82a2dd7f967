"""``merge3 eval``: score a checkpoint on tasks, print a summary, write per-item logs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from merge3.errors import Merge3Error

__all__ = ["register", "run_eval"]

_EPILOG = """\
examples:
  merge3 eval models/gpt2_a --tasks tasks/arith_gen.yaml,tasks/arith_mc.yaml \\
      --backend hf --limit 100 --log-samples runs/eval
  merge3 eval zoo/encoder --tasks tasks/ --items anchors.json --log-samples runs/eval
  .venv-vllm/bin/merge3 eval models/llama --tasks tasks/ --backend vllm --log-samples runs/eval
  merge3 eval models/base --tasks tasks/ --route mass \
      --route-experts sst2=models/sst2,qnli=models/qnli --log-samples runs/eval

Logs: OUT/<model name>/results.json and OUT/<model name>/samples_<task>.jsonl
(docs/formats.md); `merge3 irt calibrate` reads OUT directly. Task YAMLs: docs/evaluators.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand to the ``merge3`` command line."""
    parser = subparsers.add_parser(
        "eval",
        help="score a model on tasks and write per-item logs",
        description="Score MODEL (a Hugging Face model directory) on tasks; print a summary "
        "table and write per-item logs that `merge3 irt calibrate` reads.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="model directory (config.json, weights, "
                        "tokenizer; encoders also heads/<task>.safetensors)")
    parser.add_argument("--tasks", required=True, metavar="T1,T2",
                        help="comma-separated task YAMLs or directories of task YAMLs")
    from evaluators.backends import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS.names(), default="hf",
                        help=f"evaluator backend (default hf): {', '.join(BACKENDS)}; hf is "
                        "transformers, vllm scores causal LMs, mass routes with MASS "
                        "(see --route)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="score only the first N items of each task")
    parser.add_argument("--items", default=None, metavar="ANCHORS.json",
                        help="score only these item ids (a JSON list, {'items': [...]} or "
                        "{task: [ids]}); an id not in a task's items is an error")
    parser.add_argument("--log-samples", default=None, metavar="OUT",
                        help="write OUT/<model name>/results.json and samples_<task>.jsonl")
    parser.add_argument("--model-name", default=None,
                        help="name in the logs (default: the model directory's name)")
    parser.add_argument("--tokenizer", default=None, metavar="DIR",
                        help="tokenizer directory (default: MODEL)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i] (default: auto)")
    parser.add_argument("--dtype", default="auto",
                        help="auto, float32, bfloat16 or float16 (auto: fp32 on CPU, bf16 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per forward pass (default: the backend's)")
    parser.add_argument("--max-length", type=int, default=None, metavar="N",
                        help="tokens the model reads per input, longer contexts cut from the "
                        "left (lm-eval's max_length; default: the model's own window, e.g. "
                        "512 for a BERT encoder); at most that window")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run Python code shipped in the model directory (config.json "
                        "auto_map); off by default: only for code you have read and trust")
    from evaluators.mass_cli import add_route_arguments

    add_route_arguments(parser)
    parser.set_defaults(func=_handler)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``merge3 eval`` (errors propagate as ``Merge3Error``)."""
    from evaluators.backends import make_evaluator
    from evaluators.logs import summarize, write_eval_logs
    from evaluators.tasks import load_tasks, read_item_ids, select_items

    if args.limit is not None and args.limit < 1:
        raise Merge3Error(f"--limit must be >= 1, not {args.limit}.")
    tasks = load_tasks([t for t in args.tasks.split(",") if t.strip()])
    if args.items:
        tasks = select_items(tasks, read_item_ids(args.items))
    if args.limit is not None:
        from evaluators.tasks import Task

        tasks = [Task(t.spec, t.source, t.items[: args.limit]) for t in tasks]
    items = [item for task in tasks for item in task.items]
    options = {"tokenizer": args.tokenizer, "device": args.device, "dtype": args.dtype,
               "progress": not args.no_progress, "trust_remote_code": args.trust_remote_code}
    if args.batch_size:
        options["batch_size"] = args.batch_size
    if args.max_length is not None:
        if args.max_length < 1:
            raise Merge3Error(f"--max-length must be >= 1, not {args.max_length}.")
        options["max_length"] = args.max_length
    start = time.perf_counter()
    default_name = Path(args.model).resolve().name
    from evaluators.mass_cli import make_routed_evaluator, routing_summary, wants_routing

    routed = wants_routing(args)
    if routed and args.max_length is not None:
        raise Merge3Error("--max-length does not apply to routed evaluation (--route mass), "
                          "which reads each input up to the encoder's window.",
                          fix="drop --max-length.")
    if routed:
        evaluator, default_name = make_routed_evaluator(args)
    else:
        evaluator = make_evaluator(args.backend, args.model, **options)
    try:
        results = evaluator.evaluate(items)
    finally:
        evaluator.close()
    seconds = time.perf_counter() - start
    if routed:
        print(routing_summary(evaluator))
    metrics = {t.name: t.spec.main_metric for t in tasks}
    name = args.model_name or default_name
    _print_summary(name, summarize(results, metrics), seconds)
    if args.log_samples:
        where = write_eval_logs(args.log_samples, name, args.model, results, metrics)
        print(f"logs: {where}")
    return 0


def _print_summary(model: str, summary: dict, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model} ({seconds:.1f} s)")
    for column in ("task", "metric", "score", "n"):
        table.add_column(column, justify="right" if column in ("score", "n") else "left")
    for task, entry in summary.items():
        table.add_row(task, entry["metric"], f"{entry['score']:.4f}", str(entry["n"]))
    Console().print(table)


def _handler(args: argparse.Namespace) -> int:
    """Errors propagate to `merge3`'s main, which prints one line and exits 2."""
    return run_eval(args)
