"""mergekit's ``slices:``: an output model stacked from layer ranges of models.

The plan names, for every output tensor, the source tensors it is merged from — which
model, which tensor name — and the settings of the parameters, following mergekit
0.1.5's planner (``mergekit/plan.py: MergePlanner.plan_module/plan_slice/plan_layer``,
``mergekit/config.py: ConfigReader``):

- the output layers are the slices' layers in order: slice k's layer j (0-based) is
  output layer (layers of slices 0..k−1) + j, merged from layer start_s + j of each of
  its sources s;
- tensors before the layers (embeddings) are merged from the sources of the first slice,
  tensors after them (final norm, output head) from those of the last slice;
- a gradient runs across each slice's own layers: layer j of a slice of n layers takes
  t = j/(n − 1) (t = 1 when n = 1); tensors outside the layers take t = 0;
- a per-model parameter is looked up on the source, then in the slice's ``parameters``,
  then in the recipe's, then the method's default; its filters match the *source*
  tensor's name, a global parameter's filters the output tensor's name;
- the base of a slice (its ``base_model``, else the recipe's) is the source naming that
  model; methods that use a base merge the other sources onto it.

Which tensors precede the layers is read from their names (embeddings: ``emb``, ``wte``,
``wpe``; mergekit reads its architecture tables); every other tensor outside the layers
follows them. The output config's layer count (``num_hidden_layers``, ``n_layer`` or
``num_layers``) is the number of output layers, and a per-layer ``layer_types`` list
follows the layers it came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from merge3.checkpoints import Checkpoint
from merge3.errors import MergeError, RecipeError
from merge3.executor import check_settings, count_layers, merge_tensor
from merge3.methods import MergeMethod
from merge3.recipe import Fallback, ModelEntry, Recipe, Slice, resolve_parameter
from merge3.task_vectors import _LAYER as LAYER_PATTERN
from merge3.task_vectors import layer_index

__all__ = ["SourceTensor", "OutputTensor", "SlicePlan", "whole_model_recipe", "plan_slices",
           "merge_slices", "is_pre_layer", "with_layer_index"]

LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
# Names of tensors that come before the first layer; "embed_out" is GPT-NeoX's head.
_PRE_LAYER = re.compile(r"emb|(?:^|\.)(?:wte|wpe)\.")
_POST_LAYER = re.compile(r"embed_out|lm_head")


def is_pre_layer(name: str) -> bool:
    """Whether a tensor outside the layers precedes them (an embedding)."""
    return bool(_PRE_LAYER.search(name)) and not _POST_LAYER.search(name)


def with_layer_index(name: str, index: int) -> str:
    """``name`` with its layer number replaced (``model.layers.3.x`` -> ``model.layers.7.x``)."""
    match = LAYER_PATTERN.search(name)
    if match is None:
        raise ValueError(f"{name!r} is not in a layer")
    return f"{name[:match.start(1)]}{index}{name[match.end(1):]}"


@dataclass(frozen=True)
class SourceTensor:
    """One input of an output tensor: a tensor of one checkpoint and its settings."""

    model: int  # index into SlicePlan.checkpoints
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # per-model parameters


@dataclass(frozen=True)
class OutputTensor:
    """An output tensor: the inputs merged into it, the base (if the method uses one), the
    gradient position t and the global parameter settings."""

    name: str
    inputs: tuple[SourceTensor, ...]
    base: SourceTensor | None
    t: float
    global_settings: Mapping[str, Any]
    slice_index: int | None  # None: before or after the layers


@dataclass
class SlicePlan:
    """Every output tensor of a slices recipe, in output order, over opened checkpoints."""

    checkpoints: list[Checkpoint]
    tensors: list[OutputTensor]
    num_layers: int
    config_updates: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]


def _layers_of(checkpoint: Checkpoint) -> int:
    return checkpoint.num_layers() or count_layers(checkpoint.names())


def whole_model_recipe(recipe: Recipe, method: MergeMethod,
                       open_checkpoint: Callable[[str], Checkpoint]) -> Recipe | None:
    """The recipe as a ``models`` list when its slices are one slice of whole models (the
    canonical mergekit slerp recipe) that names the base among its sources where the method
    uses one; None when the slices cut layers or leave the base out (the slice planner
    then refuses it, or merges without it, as mergekit does)."""
    assert recipe.slices is not None
    if len(recipe.slices) != 1:
        return None
    part = recipe.slices[0]
    if part.parameters or (part.base_model and part.base_model != recipe.base_model):
        return None
    paths = set()
    for source in part.sources:
        checkpoint = open_checkpoint(source.model)
        if tuple(source.layer_range) != (0, _layers_of(checkpoint)):
            return None
        paths.add(checkpoint.path.resolve())
    if (recipe.base_model and method.base != "unused"
            and open_checkpoint(recipe.base_model).path.resolve() not in paths):
        return None
    models = [ModelEntry(model=s.model, parameters=s.parameters) for s in part.sources]
    return recipe.model_copy(update={"models": models, "slices": None})


def _check_slice_parameters(recipe: Recipe, method: MergeMethod) -> None:
    """Unknown parameters and values outside their range, in slices and their sources."""
    assert recipe.slices is not None
    for i, part in enumerate(recipe.slices):
        check_settings(method, f"slices[{i}].parameters", part.parameters,
                       method.parameter_names)
        for j, source in enumerate(part.sources):
            check_settings(method, f"slices[{i}].sources[{j}].parameters", source.parameters,
                           set(method.per_model))


def _chain(key: str, default: Any, *scopes: Mapping[str, Any]) -> Fallback:
    return Fallback([*(scope[key] for scope in scopes if key in scope), default])


class _Planner:
    """Builds a :class:`SlicePlan` (mergekit's MergePlanner, for one module)."""

    def __init__(self, recipe: Recipe, method: MergeMethod,
                 open_checkpoint: Callable[[str], Checkpoint]) -> None:
        self.recipe, self.method, self.open = recipe, method, open_checkpoint
        self.checkpoints: list[Checkpoint] = []
        self.by_path: dict[Path, int] = {}
        self.by_reference: dict[str, int] = {}
        self.tensors: list[OutputTensor] = []
        self.slice_roles: dict[int, tuple[list[int], int | None]] = {}

    def model(self, reference: str) -> int:
        """The index of a model (opened once, however many slices name it)."""
        if reference not in self.by_reference:
            checkpoint = self.open(reference)
            key = checkpoint.path.resolve()
            if key not in self.by_path:
                self.by_path[key] = len(self.checkpoints)
                self.checkpoints.append(checkpoint)
            self.by_reference[reference] = self.by_path[key]
        return self.by_reference[reference]

    def roles(self, k: int, part: Slice) -> tuple[list[int], int | None]:
        """Which sources of slice ``k`` are inputs and which (if any) is the base."""
        if k not in self.slice_roles:
            self.slice_roles[k] = self._roles(k, part)
        return self.slice_roles[k]

    def _roles(self, k: int, part: Slice) -> tuple[list[int], int | None]:
        models = [self.model(s.model) for s in part.sources]
        base_ref = part.base_model or self.recipe.base_model
        base = None
        if self.method.base != "unused" and base_ref is not None:
            wanted = self.model(base_ref)
            base = next((j for j, m in enumerate(models) if m == wanted), None)
        # mergekit: a base must be among the slice's sources; karcher's base is only one
        # more input, so a slice without it merges without it
        missing_base = base_ref is not None and base is None and not self.method.base_is_input
        if (base is None and self.method.base == "required") or (
                missing_base and self.method.base == "optional"):
            missing = ("no base_model is given" if base_ref is None else
                       f"its base {base_ref} is not among the slice's sources")
            needs = "merges onto" if self.method.base == "required" else "is given"
            raise RecipeError(
                f"slices[{k}]: {self.method.name} {needs} a base model, and {missing}.",
                fix="list the base among the slice's sources with the same layer_range as "
                    "the others (as mergekit requires)"
                    + ("." if self.method.base == "required" else ", or drop base_model."))
        inputs = [j for j in range(len(models)) if j != base]
        count, low, high = len(inputs), self.method.min_models, self.method.max_models
        if count < low or (high is not None and count > high):
            span = (f"exactly {low}" if high == low else
                    f"at least {low}" if high is None else f"{low} to {high}")
            raise RecipeError(
                f"slices[{k}]: {self.method.name} merges {span} model(s) besides the base; "
                f"this slice gives {count}.",
                fix="change the slice's sources (passthrough takes one source per slice).")
        return inputs, base

    def source(self, part: Slice, j: int, name: str) -> SourceTensor:
        spec = part.sources[j]
        settings = {}
        for key, default in self.method.per_model.items():
            chain = _chain(key, default, spec.parameters, part.parameters,
                           self.recipe.parameters)
            if len(chain) == 1 and default is None:
                raise RecipeError(f"slices: {spec.model} needs parameter {key!r}.",
                                  fix=f"add `parameters: {{{key}: ...}}` to the source.")
            settings[key] = chain
        model = self.model(spec.model)
        checkpoint = self.checkpoints[model]
        if name not in checkpoint:
            raise MergeError(f"Tensor {name!r} is not in {checkpoint.path} (a source of the "
                             f"recipe's slices, layer_range {list(spec.layer_range)}).",
                             fix="check the slice's layer_range and that its models share "
                                 "one architecture.")
        return SourceTensor(model, name, settings)

    def add(self, out_name: str, k: int, part: Slice, names: Sequence[str], t: float,
            layer_slice: int | None) -> None:
        inputs, base = self.roles(k, part)
        sources = [self.source(part, j, names[j]) for j in range(len(part.sources))]
        shapes = {self.checkpoints[s.model].info(s.name).shape for s in sources}
        if len(shapes) > 1:
            listing = ", ".join(f"{self.checkpoints[s.model].path}:{s.name} "
                                f"{list(self.checkpoints[s.model].info(s.name).shape)}"
                                for s in sources)
            raise MergeError(f"Shape mismatch for output tensor {out_name!r}: {listing}.",
                             fix="slice only models of the same size and architecture.")
        global_settings = {k_: _chain(k_, d, part.parameters, self.recipe.parameters)
                           for k_, d in self.method.global_params.items()}
        self.tensors.append(OutputTensor(
            out_name, tuple(sources[j] for j in inputs),
            None if base is None else sources[base], t, global_settings, layer_slice))

    def plan(self) -> SlicePlan:
        slices = self.recipe.slices
        assert slices is not None
        first = self.checkpoints[self.model(slices[0].sources[0].model)]
        last = self.checkpoints[self.model(slices[-1].sources[0].model)]
        for k, part in enumerate(slices):
            for spec in part.sources:
                layers = _layers_of(self.checkpoints[self.model(spec.model)])
                if spec.layer_range[1] > layers:
                    raise RecipeError(
                        f"slices[{k}]: layer_range {list(spec.layer_range)} of {spec.model} "
                        f"goes past its {layers} layers.",
                        fix=f"use a range within [0, {layers}].")
        kinds = {c.architecture for c in self.checkpoints} - {None}
        if len(kinds) > 1:
            listing = ", ".join(f"{c.path} is {c.architecture}" for c in self.checkpoints)
            raise MergeError(f"Architectures differ among the slices' models: {listing}.",
                             fix="stack layers of models of one architecture.")
        outside = [n for n in first.names() if layer_index(n) is None]
        for name in outside:
            if is_pre_layer(name):
                self.add(name, 0, slices[0], [name] * len(slices[0].sources), 0.0, None)
        out_layer = 0
        layer_types: list[Any] = []
        for k, part in enumerate(slices):
            lead = self.checkpoints[self.model(part.sources[0].model)]
            for j in range(part.num_layers):
                t = j / (part.num_layers - 1) if part.num_layers > 1 else 1.0
                layer = part.sources[0].layer_range[0] + j
                for name in (n for n in lead.names() if layer_index(n) == layer):
                    names = [with_layer_index(name, s.layer_range[0] + j) for s in part.sources]
                    self.add(with_layer_index(name, out_layer), k, part, names, t, k)
                types = lead.config.get("layer_types")
                if isinstance(types, list) and layer < len(types):
                    layer_types.append(types[layer])
                out_layer += 1
        for name in (n for n in last.names() if layer_index(n) is None):
            if not is_pre_layer(name):
                self.add(name, len(slices) - 1, slices[-1],
                         [name] * len(slices[-1].sources), 0.0, None)
        reference = (self.checkpoints[self.model(self.recipe.base_model)]
                     if self.recipe.base_model else first)
        updates: dict[str, Any] = {key: out_layer for key in LAYER_COUNT_KEYS
                                   if key in reference.config}
        if isinstance(reference.config.get("layer_types"), list) and len(layer_types) == out_layer:
            updates["layer_types"] = layer_types
        return SlicePlan(self.checkpoints, self.tensors, out_layer, updates)


def plan_slices(recipe: Recipe, method: MergeMethod,
                open_checkpoint: Callable[[str], Checkpoint]) -> SlicePlan:
    """The output tensors of a slices recipe, checked against the checkpoints (names,
    shapes, layer ranges, parameters, the base and the number of models per slice)."""
    if method.align:
        raise RecipeError(f"{method.name} aligns whole models, so it cannot merge layer "
                          "slices.", fix="list whole models under `models`.")
    _check_slice_parameters(recipe, method)
    return _Planner(recipe, method, open_checkpoint).plan()


def merge_slices(plan: SlicePlan, method: MergeMethod, *, seed: int = 0,
                 out_dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None,
                 on_tensor: Callable[[str], None] | None = None,
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """Merge the plan tensor by tensor (``merge3.executor.merge_tensor``), yielding
    ``(output name, tensor)`` in output order.

    Integer and bool buffers come from the base (else the first input); for a method that
    uses a base, a tensor no input changed is the base's — as ``merge_model`` does.
    """
    for out in plan.tensors:
        inputs = [plan.checkpoints[s.model].get(s.name) for s in out.inputs]
        base = None if out.base is None else plan.checkpoints[out.base.model].get(out.base.name)
        reference = base if base is not None else inputs[0]
        if not reference.is_floating_point():
            yield out.name, reference
        elif base is not None and all(torch.equal(x, base) for x in inputs):
            yield out.name, base.to(device=device or base.device, dtype=out_dtype or base.dtype)
        else:
            input_settings = [{k: resolve_parameter(v, s.name, out.t)
                               for k, v in s.settings.items()} for s in out.inputs]
            global_settings = {k: resolve_parameter(v, out.name, out.t)
                               for k, v in out.global_settings.items()}
            labels = [f"{plan.checkpoints[s.model].path} ({s.name})"
                      for s in (*out.inputs, *([] if out.base is None else [out.base]))]
            yield out.name, merge_tensor(
                method, out.name, base, inputs, input_settings, global_settings, t=out.t,
                seed=seed, device=device, out_dtype=out_dtype or reference.dtype,
                labels=labels)
        if on_tensor is not None:
            on_tensor(out.name)
