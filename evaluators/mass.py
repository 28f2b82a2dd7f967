"""The ``mass`` evaluator backend: MASS routing behind the Evaluator protocol.

MASS (Crisostomi et al. 2025; the algorithm is ``merge3.routing``) routes each input to a
TSV-M merge of the experts it needs; this backend scores classification items with task
heads on the routed features::

    evaluator = make_evaluator("mass", "models/base",
                               experts={"sst2": "models/sst2", "qnli": "models/qnli"})

Heads follow docs/formats.md: task t's head is ``heads/<t>.safetensors`` of expert t's
directory (the expert's own, fine-tuned head), else of the base directory. Two ways to
pick the head an item is scored with:

- ``item`` (default): the item's own head (``item.head`` or its task) — the output space
  the benchmark asks for, as every other merged model in merge3 is scored; the routing
  decides only the weights.
- ``routed``: the paper's protocol without task labels (reference code:
  ``MassInferenceWrapper.embed_image``): among the heads of the tasks the input was
  routed to, the one with the largest logit; an item answered by another task's head
  scores 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from evaluators.errors import EvaluatorError
from evaluators.heads import Head, load_head
from evaluators.items import Item, ItemResult
from evaluators.scoring import score_classification
from merge3.routing import MASS, MassConfig, Routing, RoutingError

__all__ = ["MassEvaluator", "HEAD_SELECTION", "load_mass_evaluator"]

HEAD_SELECTION = ("item", "routed")


class MassEvaluator:
    """``evaluate(items)`` with MASS; ``load_weights`` is refused (the experts define it)."""

    def __init__(self, mass: MASS, head_dirs: Mapping[str, Sequence[str | os.PathLike[str]]],
                 *, fallback_dirs: Sequence[str | os.PathLike[str]] = (),
                 head_selection: str = "item") -> None:
        """``head_dirs[task]``: where task's head is looked for, in order; tasks without
        an entry look in ``fallback_dirs``."""
        if head_selection not in HEAD_SELECTION:
            raise RoutingError(f"Unknown head selection {head_selection!r}.",
                               fix=f"use one of {', '.join(HEAD_SELECTION)}.")
        self.mass = mass
        self.head_dirs = {k: [Path(p) for p in v] for k, v in head_dirs.items()}
        self.fallback_dirs = [Path(p) for p in fallback_dirs]
        self.head_selection = head_selection
        self._heads: dict[str, Head] = {}
        self.last_routing: Routing | None = None

    @classmethod
    def from_pretrained(cls, base: str | os.PathLike[str],
                        experts: Mapping[str, str | os.PathLike[str]],
                        config: MassConfig | None = None, *, head_selection: str = "item",
                        **options) -> MassEvaluator:
        """MASS over ``base`` and ``experts`` {task: directory}; heads as the module says."""
        mass = MASS.from_pretrained(base, experts, config, **options)
        head_dirs = {task: [Path(path), Path(base)] for task, path in experts.items()}
        return cls(mass, head_dirs, fallback_dirs=[Path(base)], head_selection=head_selection)

    def head(self, name: str) -> Head:
        """Task ``name``'s head: from its expert's directory, else the base's."""
        if name not in self._heads:
            dirs = self.head_dirs.get(name, self.fallback_dirs)
            found = [d for d in dirs if (d / "heads" / f"{name}.safetensors").is_file()]
            if not found:
                where = ", ".join(str(d) for d in dirs) or "no directory"
                raise RoutingError(
                    f"No head for task {name!r} (looked in {where}).",
                    fix=f"save heads/{name}.safetensors beside the expert for {name!r} or the "
                        "base model (docs/formats.md), or name the expert NAME=DIR after "
                        "the task.")
            self._heads[name] = load_head(found[0], name)
        return self._heads[name]

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        raise RoutingError("A MASS evaluator's weights come from its experts; they cannot be "
                           "replaced in place.",
                           fix="build a new MassEvaluator (or `merge3 eval --route mass`) "
                               "from the experts you want.")

    def close(self) -> None:
        """Put θ_0 back into the resident model."""
        self.mass.restore_base()

    def evaluate(self, items: Sequence[Item]) -> list[ItemResult]:
        """Route every item (pass 1), score it on its group's merge (pass 2); same order."""
        bad = [i for i in items if i.format != "classification"]
        if bad:
            raise EvaluatorError(
                f"Item {bad[0].id!r} of task {bad[0].task!r} is a {bad[0].format} item; MASS "
                "routes encoders with per-task heads, which score only classification items.",
                fix="evaluate generative / multiple_choice tasks without --route.")
        if not items:
            return []
        routing = self.mass.route([item.prompt for item in items])
        self.last_routing = routing
        wanted = {i.head or i.task for i in items}
        if self.head_selection == "routed":
            wanted |= {t for s in routing.selections for t in s}
        heads = {name: self.head(name) for name in sorted(wanted)}
        poolings = sorted({h.pooling for h in heads.values()})
        features, _ = self.mass.features([item.prompt for item in items], poolings, routing)
        return [self._score(k, item, features, routing, heads) for k, item in enumerate(items)]

    def _score(self, k: int, item: Item, features: Mapping[str, torch.Tensor],
               routing: Routing, heads: Mapping[str, Head]) -> ItemResult:
        own = item.head or item.task
        candidates = [own] if self.head_selection == "item" else list(routing.selections[k])
        logits = {name: _logits(features, k, heads[name], name) for name in candidates}
        chosen = max(candidates, key=lambda n: (max(logits[n]), -candidates.index(n)))
        routed = {"routed_tasks": list(routing.selections[k]),
                  "routing_weights": [round(float(w), 6) for w in routing.weights[k]],
                  "head": chosen}
        if chosen == own:
            result = score_classification(item, logits[chosen], heads[chosen].labels)
            return ItemResult(result.task, result.item, result.score, result.prediction,
                              result.target, result.metrics, {**result.details, **routed})
        labels, own_labels = heads[chosen].labels, heads[own].labels
        best = max(range(len(labels)), key=lambda i: (logits[chosen][i], -i))
        target = item.target
        if isinstance(target, int) and 0 <= target < len(own_labels):
            target = own_labels[target]
        return ItemResult(item.task, item.id, 0.0, f"{chosen}/{labels[best]}", target,
                          {"acc": 0.0}, {"logits": logits[chosen], **routed})


def _logits(features: Mapping[str, torch.Tensor], k: int, head: Head, name: str) -> list[float]:
    row = features[head.pooling][k]
    if row.shape[0] != head.weight.shape[1]:
        raise RoutingError(f"Head {name!r} expects {head.weight.shape[1]} features, the encoder "
                           f"gives {row.shape[0]}.", fix="use the heads trained for this encoder.")
    return (row @ head.weight.T + head.bias).tolist()


def load_mass_evaluator(model_path: str | os.PathLike[str], *,
                        experts: Mapping[str, str | os.PathLike[str]],
                        config: MassConfig | None = None, head_selection: str = "item",
                        device: str = "auto", dtype: str = "auto", batch_size: int | None = None,
                        tokenizer: str | os.PathLike[str] | None = None, progress: bool = False,
                        trust_remote_code: bool = False) -> MassEvaluator:
    """The ``mass`` backend: MASS over base ``model_path`` and ``experts`` {task: dir}.

    Takes the options every backend gets (``make_evaluator``); MASS computes in float32 on
    the base's own tokenizer and loads only natively supported encoders, so another dtype,
    a separate tokenizer or ``trust_remote_code`` is refused. ``progress`` is accepted and
    unused (two passes, no long loop).
    """
    if not experts:
        raise RoutingError("The mass backend needs experts.",
                           fix="pass experts={task: model directory, ...} (CLI: "
                               "--route-experts A=DIR_A,B=DIR_B).")
    if dtype not in ("auto", "float32"):
        raise RoutingError(f"MASS computes in float32; dtype {dtype} is not supported.",
                           fix="drop --dtype (or pass dtype='float32').")
    if tokenizer is not None:
        raise RoutingError("MASS uses the base model's own tokenizer; a separate tokenizer "
                           "is not supported.", fix="drop --tokenizer.")
    if trust_remote_code:
        raise RoutingError("trust_remote_code does not apply to MASS (--route).",
                           fix="route models that transformers loads natively.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options: dict = {"device": device}
    if batch_size:
        options["batch_size"] = batch_size
    return MassEvaluator.from_pretrained(model_path, experts, config,
                                         head_selection=head_selection, **options)
