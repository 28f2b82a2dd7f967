"""MASS: input-adaptive merging of task experts by routing in their singular subspaces.

Crisostomi et al. 2025, "MASS: MoErging through Adaptive Subspace Selection" (reference
code: github.com/crisostomi/mass, ``MassAlgorithm`` and ``MassInferenceWrapper``).

- Offline: each expert's task vector as TSV-C factors (``TaskFactors``); the first-pass
  model is θ_0 + α·TSV-M(all tasks).
- Pass 1: run the inputs through the first-pass model; at the routing weight W take the
  pooled input feature z, and score each task by −‖z − V_t V_tᵀ z‖ (``ProjectionRouter``);
  select tasks by the z-scored softmax with a threshold and at most k (``select_tasks``).
- Pass 2: group the inputs by their selected task set; each group runs through
  θ_0 + α·TSV-M(its tasks), rebuilt from the stored factors, in one resident model.

The result is features per input plus the routing; heads are applied by the caller
(the ``mass`` evaluator backend, ``evaluators.mass``, scores items with them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from merge3.remote_code import check_remote_code
from merge3.routing.errors import RoutingError
from merge3.routing.factors import TaskFactors
from merge3.routing.features import POOLINGS, encode, forward_features
from merge3.routing.router import ProjectionRouter, resolve_layer
from merge3.routing.selection import group_by_selection, select_tasks, task_weights

__all__ = ["MassConfig", "Routing", "MASS", "load_state"]


@dataclass(frozen=True)
class MassConfig:
    """MASS settings; the defaults are the paper's."""

    layer: int | str | None = None  # weight whose input routes: None = the MLP input of the
    #                                 second-to-last block; an int = that block's; or a name
    threshold: float = 0.2  # select the tasks whose z-scored softmax weight exceeds this…
    max_tasks: int = 3  # …at most this many (the largest); the argmax when none passes
    temperature: float = 1.0  # softmax temperature on the z-scores
    alpha: float = 1.0  # θ = θ_0 + α·TSV-M(tasks), in both passes
    token: str = "mean"  # routing feature: masked mean over tokens, or "cls" (first token)
    k_fraction: float | None = None  # triplets kept per task: ⌊r/T⌋ (None) or this · r

    def __post_init__(self) -> None:
        if self.token not in POOLINGS:
            raise RoutingError(f"MassConfig.token {self.token!r} is not one of {POOLINGS}.",
                               fix="use mean (language encoders) or cls.")
        if not 0.0 <= self.threshold < 1.0:
            raise RoutingError(f"MassConfig.threshold must be in [0, 1), not {self.threshold}.",
                               fix="use the paper's 0.2.")
        if self.max_tasks < 1:
            raise RoutingError(f"MassConfig.max_tasks must be >= 1, not {self.max_tasks}.",
                               fix="use the paper's 3.")


@dataclass(frozen=True)
class Routing:
    """The first pass's decision for N inputs over T tasks."""

    tasks: tuple[str, ...]
    residuals: torch.Tensor  # (N, T) ‖z − V_t V_tᵀ z‖
    weights: torch.Tensor  # (N, T) z-scored softmax of −residuals
    selections: list[tuple[str, ...]] = field(default_factory=list)  # per input, task order

    def groups(self) -> dict[tuple[str, ...], list[int]]:
        """{selected task set: input positions}, in first-seen order."""
        return group_by_selection(self.selections)

    @property
    def top1(self) -> list[str]:
        """Each input's highest-weight task."""
        return [self.tasks[i] for i in self.weights.argmax(1).tolist()]


class MASS:
    """A resident encoder that routes each input to a TSV-M merge of the experts it needs.

    ``model`` holds θ_0 (its state dict is the base); ``factors`` the experts' TSV-C
    factors over that base. Weights are swapped in place between groups; call
    :meth:`restore_base` to get θ_0 back.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, factors: TaskFactors,
                 config: MassConfig | None = None, *, batch_size: int = 64,
                 max_tokens: int | None = None, device: str | torch.device = "cpu") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.factors = factors
        self.config = config or MassConfig()
        self.router = ProjectionRouter.from_factors(factors, resolve_layer(factors,
                                                                           self.config.layer))
        if self.router.module not in dict(model.named_modules()):
            raise RoutingError(
                f"The model has no module {self.router.module!r} whose input the router "
                "reads.", fix="build MASS from this model's own state dict (same names).")
        self.batch_size = batch_size
        self.max_tokens = max_tokens or int(
            getattr(getattr(model, "config", None), "max_position_embeddings", 512))
        self.device = torch.device(device)
        self._loaded: tuple[str, ...] | None = None
        self._first_pass: dict[str, torch.Tensor] | None = None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, base: str | os.PathLike[str],
                        experts: Mapping[str, str | os.PathLike[str]],
                        config: MassConfig | None = None, **options) -> MASS:
        """MASS over Hugging Face encoder directories: ``base`` (θ_0 and its tokenizer) and
        ``experts`` {task: fine-tuned directory}."""
        from transformers import AutoTokenizer

        model = load_encoder(base)
        base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        states = {task: load_state(path, base_state, task) for task, path in experts.items()}
        factors = TaskFactors.from_states(
            base_state, states, k_fraction=(config or MassConfig()).k_fraction)
        del states
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(base), trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise RoutingError(f"Cannot load the tokenizer of base model {str(base)!r}: {err}",
                               fix="save the tokenizer beside the base model's weights.") from err
        return cls(model.to(options.get("device", "cpu")), tokenizer, factors, config, **options)

    # -- weights ------------------------------------------------------------------------
    def load_tasks(self, tasks: Sequence[str]) -> None:
        """Put θ_0 + α·TSV-M(tasks) into the resident model (nothing to do if it is there)."""
        key = tuple(sorted(set(tasks), key=self.factors.index))
        if key == self._loaded:
            return
        if key == self.factors.tasks:  # the first pass runs on every call: keep it
            if self._first_pass is None:
                self._first_pass = self.factors.merged_state(key, self.config.alpha)
            self._copy(self._first_pass)
        else:
            self._copy(self.factors.merged_state(key, self.config.alpha))
        self._loaded = key

    def restore_base(self) -> None:
        """Put θ_0 back into the resident model."""
        self._copy({name: self.factors.base[name] for name in self.factors.changed})
        self._loaded = None

    def _copy(self, state: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor)

    # -- the two passes -----------------------------------------------------------------
    def route(self, texts: Sequence[str]) -> Routing:
        """Pass 1: route each text with the first-pass model (θ_0 + α·TSV-M(all))."""
        self.load_tasks(self.factors.tasks)
        batches = encode(self.tokenizer, list(texts), self.batch_size, self.max_tokens)
        _, z = forward_features(self.model, batches, (), capture=self.router.module,
                                capture_pooling=self.config.token, device=self.device)
        return self.route_features(z)

    def route_features(self, features: torch.Tensor) -> Routing:
        """Routing of given (N, n) routing-layer features."""
        residuals = self.router.residuals(features)
        weights = task_weights(-residuals, self.config.temperature)
        chosen = select_tasks(weights, self.config.threshold, self.config.max_tasks)
        tasks = self.factors.tasks
        return Routing(tasks, residuals, weights, [tuple(tasks[i] for i in c) for c in chosen])

    def features(self, texts: Sequence[str], poolings: Sequence[str] = ("mean",),
                 routing: Routing | None = None) -> tuple[dict[str, torch.Tensor], Routing]:
        """Both passes: {pooling: (N, d) features from each input's routed merge}, routing."""
        texts = list(texts)
        routing = routing or self.route(texts)
        out: dict[str, torch.Tensor] = {}
        for selected, positions in routing.groups().items():
            self.load_tasks(selected)
            batches = encode(self.tokenizer, [texts[i] for i in positions], self.batch_size,
                             self.max_tokens)
            pooled, _ = forward_features(self.model, batches, poolings, device=self.device)
            for pooling, values in pooled.items():
                if pooling not in out:
                    out[pooling] = values.new_zeros(len(texts), values.shape[1])
                out[pooling][torch.tensor(positions)] = values
        return out, routing


def load_encoder(path: str | os.PathLike[str]) -> torch.nn.Module:
    """``AutoModel`` of a Hugging Face directory in float32, eval mode; clear errors."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    if not (Path(path) / "config.json").is_file():
        raise RoutingError(f"{str(path)!r} is not a Hugging Face model directory (no "
                           "config.json).", fix="pass a directory written by save_pretrained.")
    hf_logging.disable_progress_bar()
    check_remote_code(path, trust_remote_code=False)
    return AutoModel.from_pretrained(str(path), dtype=torch.float32,
                                     trust_remote_code=False).eval()


def load_state(path: str | os.PathLike[str], base: Mapping[str, torch.Tensor],
               task: str) -> dict[str, torch.Tensor]:
    """An expert's state dict under the base model's tensor names."""
    model = load_encoder(path)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if set(state) != set(base):
        missing = sorted(set(base) - set(state))[:3]
        raise RoutingError(
            f"Expert {task!r} ({str(path)!r}) is not the base model's architecture: "
            f"tensors {missing or sorted(set(state) - set(base))[:3]} differ.",
            fix="route experts fine-tuned from the base model given as MODEL.")
    return state
