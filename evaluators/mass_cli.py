"""``merge3 eval MODEL --route mass --route-experts ...``: score items with the ``mass``
backend (evaluators.mass; ``--backend mass`` is the same).

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

from merge3.routing import RoutingError

if TYPE_CHECKING:
    from evaluators.mass import MassEvaluator

__all__ = ["add_route_arguments", "parse_experts", "wants_routing", "make_routed_evaluator",
           "routing_summary", "ROUTING_BACKEND"]

ROUTING_BACKEND = "mass"  # the registered backend that --route selects


def add_route_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--route*`` options of ``merge3 eval``."""
    from evaluators.mass import HEAD_SELECTION

    group = parser.add_argument_group(
        "routing (MASS)",
        "Score with MASS (Crisostomi et al. 2025): MODEL is the base; each input is routed "
        "to a TSV-M merge of the experts whose singular subspaces it lies in (docs/routing.md).")
    group.add_argument("--route", choices=(ROUTING_BACKEND,), default=None,
                       help="route inputs among --route-experts with MASS (the same as "
                       f"--backend {ROUTING_BACKEND})")
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
    group.add_argument("--route-heads", choices=HEAD_SELECTION, default="item",
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
    """True when ``merge3 eval`` was asked to route (``--route mass`` or ``--backend mass``);
    ``--route-*`` without it is an error rather than silently ignored."""
    if getattr(args, "route", None) or getattr(args, "backend", None) == ROUTING_BACKEND:
        return True
    if getattr(args, "route_experts", None):
        raise RoutingError("--route-experts is given but --route is not.",
                           fix=f"add --route {ROUTING_BACKEND}.")
    return False


def make_routed_evaluator(args: argparse.Namespace) -> tuple[MassEvaluator, str]:
    """The ``mass`` backend's evaluator that ``merge3 eval`` asked for, and its default
    log name."""
    from evaluators.backends import make_evaluator
    from merge3.models import resolve_model
    from merge3.routing import MassConfig

    if not args.route_experts:
        raise RoutingError("--route mass needs --route-experts.",
                           fix="list the experts: --route-experts A=DIR_A,B=DIR_B.")
    if args.backend not in ("hf", ROUTING_BACKEND):
        raise RoutingError(f"--route mass runs on transformers (the hf backend), not "
                           f"{args.backend!r}.", fix="drop --backend or use --backend hf.")
    if args.trust_remote_code:
        raise RoutingError("--trust-remote-code does not apply to routed evaluation (--route).",
                           fix="route models that transformers loads natively.")
    if args.dtype not in ("auto", "float32"):
        raise RoutingError(f"--route mass computes in float32; --dtype {args.dtype} is not "
                           "supported.", fix="drop --dtype.")
    layer = args.route_layer
    if layer is not None and layer.lstrip("-").isdigit():
        layer = int(layer)
    config = MassConfig(layer=layer, threshold=args.route_threshold,
                        max_tasks=args.route_max_tasks, alpha=args.route_alpha)
    base = resolve_model(args.model)
    evaluator = make_evaluator(ROUTING_BACKEND, base, experts=parse_experts(args.route_experts),
                               config=config, head_selection=args.route_heads,
                               device=args.device, batch_size=args.batch_size,
                               tokenizer=args.tokenizer)
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
