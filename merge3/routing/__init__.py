"""MASS routing: input-adaptive merging of task experts (Crisostomi et al. 2025, "MASS:
MoErging through Adaptive Subspace Selection"; reference code github.com/crisostomi/mass).

::

    from merge3.routing import MASS, MassConfig

    mass = MASS.from_pretrained("models/base", {"sst2": "models/sst2", "qnli": "models/qnli"})
    features, routing = mass.features(["a sentence", "another"])   # both passes
    routing.selections                                               # [("sst2",), ...]

Modules: ``factors`` (TSV-C factors, TSV-M of any subset), ``router`` (residual-norm
router at one layer), ``selection`` (z-scored softmax top-k), ``features`` (forward
passes with the routing feature), ``mass`` (the two passes). Scoring items with task
heads is the ``mass`` evaluator backend (``evaluators.mass``: ``make_evaluator("mass",
base, experts=...)``, ``merge3 eval --route mass``).
"""

from __future__ import annotations

from merge3.routing.errors import RoutingError
from merge3.routing.factors import LowRank, TaskFactors
from merge3.routing.mass import MASS, MassConfig, Routing
from merge3.routing.router import ProjectionRouter, resolve_layer
from merge3.routing.selection import group_by_selection, select_tasks, task_weights

__all__ = [
    "MASS",
    "LowRank",
    "MassConfig",
    "ProjectionRouter",
    "Routing",
    "RoutingError",
    "TaskFactors",
    "group_by_selection",
    "resolve_layer",
    "select_tasks",
    "task_weights",
]
