"""``merge3 eval MODEL --route mass --route-experts ...``: score items with MASS.

MODEL is the base model θ_0 (its tokenizer, and heads for tasks without an expert); the
experts are fine-tuned directories of the same architecture. An expert is ``NAME=DIR``
(NAME is the task whose items and head it serves), a zoo name
(``zoo:minilm/expert/<task>[@size]``, named after its task) or a bare ``DIR`` (named
after the directory).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from merge3.routing.errors import RoutingError

if TYPE_CHECKING:
    from merge3.routing.evaluator import MassEvaluator

__all__ = ["add_route_arguments", "parse_experts", "wants_routing", "make_routed_evaluator",
           "routing_summary"]


def add_route_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--route*`` options of ``merge3 eval``."""
    group = parser.add_argument_group(
        "routing (MASS)",
        "Score with MASS (Crisostomi et al. 2025): MODEL is the base; each input is routed "
        "to a TSV-M merge of the experts whose singular subspaces it lies in (docs/routing.md).")
    group.add_argument("--route", choices=("mass",), default=None,
                       help="route inputs among --route-experts with MASS")
    group.add_argument("--route-experts", default=None, metavar="[NAME=]DIR,...",
                       help="comma-separated experts: NAME=DIR, zoo:minilm/expert/<task>[@size]"
                       " or DIR (named after the directory); NAME is the task it serves")
    group.add_argument("--route-layer", default=None, metavar="BLOCK|WEIGHT",
                       help="where to route: a block index (its MLP input; default -2, the "
                       "second-to-last block) or a 2-D weight name")
    group.add_argument("--route-threshold", type=float, default=0.2, metavar="W",
                       help="select tasks whose z-scored softmax weight exceeds W (default 0.2)")
    group.add_argument("--route-max-tasks", type=int, default=3, metavar="K",
                       help="at most K tasks per input (default 3)")
    group.add_argument("--route-alpha", type=float, default=1.0, metavar="A",
                       help="θ_0 + A·TSV-M(tasks) in both passes (default 1.0)")
    group.add_argument("--route-heads", choices=("item", "routed"), default="item",
                       help="item: each item's own task head (default); routed: the paper's "
                       "label-free choice among the routed tasks' heads (max logit)")


def parse_experts(spec: str) -> dict[str, Path]:
    """``[NAME=]DIR,...`` -> {task: model directory} (zoo names resolved)."""
    from merge3.models import resolve_model

    experts: dict[str, Path] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        name, sep, where = entry.partition("=")
        if not sep:
            name, where = "", entry
        if not name:
            if where.startswith("zoo:") and "/expert/" in where:
                name = where.split("/expert/", 1)[1].split("@", 1)[0]
            else:
                name = Path(where).resolve().name
        if name in experts:
            raise RoutingError(f"Two experts are named {name!r} in --route-experts.",
                               fix="give each expert its task name: NAME=DIR.")
        experts[name] = resolve_model(where)
    if not experts:
        raise RoutingError("--route-experts lists no expert.",
                           fix="pass at least one, e.g. --route-experts sst2=models/sst2.")
    return experts


def wants_routing(args: argparse.Namespace) -> bool:
    """True when ``merge3 eval`` was asked to route; ``--route-*`` without ``--route`` is an
    error rather than silently ignored."""
    if getattr(args, "route", None):
        return True
    if getattr(args, "route_experts", None):
        raise RoutingError("--route-experts is given but --route is not.",
                           fix="add --route mass.")
    return False


def make_routed_evaluator(args: argparse.Namespace) -> tuple[MassEvaluator, str]:
    """The MASS evaluator ``merge3 eval`` asked for, and its default log name."""
    from merge3.models import resolve_model
    from merge3.routing.evaluator import MassEvaluator
    from merge3.routing.mass import MassConfig

    if not args.route_experts:
        raise RoutingError("--route mass needs --route-experts.",
                           fix="list the experts: --route-experts A=DIR_A,B=DIR_B.")
    if args.backend != "hf":
        raise RoutingError(f"--route mass runs on the hf backend, not {args.backend!r}.",
                           fix="drop --backend or use --backend hf.")
    if args.dtype not in ("auto", "float32"):
        raise RoutingError(f"--route mass computes in float32; --dtype {args.dtype} is not "
                           "supported.", fix="drop --dtype.")
    layer = args.route_layer
    if layer is not None and layer.lstrip("-").isdigit():
        layer = int(layer)
    config = MassConfig(layer=layer, threshold=args.route_threshold,
                        max_tasks=args.route_max_tasks, alpha=args.route_alpha)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    base = resolve_model(args.model)
    options = {"device": device}
    if args.batch_size:
        options["batch_size"] = args.batch_size
    evaluator = MassEvaluator.from_pretrained(base, parse_experts(args.route_experts), config,
                                              head_selection=args.route_heads, **options)
    return evaluator, f"mass-{base.name}"


def routing_summary(evaluator: MassEvaluator) -> str:
    """One line per selected task set: how many inputs it served."""
    routing = evaluator.last_routing
    if routing is None:
        return "routing: no inputs"
    counts = Counter("+".join(s) for s in routing.selections)
    layer = evaluator.mass.router.matrix
    return f"routing at {layer}:\n" + "\n".join(
        f"  {n:6d}  {tasks}" for tasks, n in counts.most_common())
