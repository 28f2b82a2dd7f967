"""Run a merge recipe: validate everything first, then stream tensor by tensor.

Peak memory is about (number of models) × (largest tensor) plus one output shard:
each output tensor is read from every input, merged in float32, cast to the output
dtype and handed to the shard writer, then freed.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from merge3.checkpoints import DTYPES, Checkpoint, CheckpointWriter, parse_size
from merge3.errors import CheckpointError, MergeError, RecipeError
from merge3.methods import MergeMethod, get_method
from merge3.recipe import Fallback, Recipe, resolve_parameter
from merge3.registry import did_you_mean
from merge3.task_vectors import layer_index

__all__ = ["MergePlan", "plan_merge", "run_merge", "merge_tensor", "resolve_model"]


def resolve_model(reference: str) -> Path:
    """A local model directory for ``reference``: a path, ``zoo:NAME``, or a hub id."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    if reference.startswith("zoo:"):
        from merge3 import zoo

        resolver = getattr(zoo, "resolve", None)
        if resolver is None:
            raise RecipeError(f"Cannot resolve {reference!r}: the zoo is not available.",
                              fix="build it with `merge3 zoo build`.")
        return Path(resolver(reference[4:]))
    if reference.count("/") == 1 and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(
                reference,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
            ))
        except Exception as err:  # offline, gated, missing: one clear message
            raise RecipeError(
                f"Model {reference!r} is neither a local directory nor downloadable ({err}).",
                fix="pass a local Hugging Face model directory.",
            ) from None
    raise RecipeError(f"Model directory {reference!r} does not exist.",
                      fix="check the path in the recipe (relative paths are read from the "
                      "recipe's folder).")


@dataclass
class MergePlan:
    """A validated merge: the method, opened checkpoints and per-model parameter settings."""

    recipe: Recipe
    method: MergeMethod
    base: Checkpoint | None
    inputs: list[Checkpoint]
    input_settings: list[dict[str, Any]]
    global_settings: dict[str, Any]
    names: list[str]
    num_layers: int
    out_dtype: torch.dtype | None

    @property
    def reference(self) -> Checkpoint:
        return self.base if self.base is not None else self.inputs[0]


def _check_parameters(recipe: Recipe, method: MergeMethod) -> None:
    known = method.parameter_names
    places = [("parameters", recipe.parameters)] + [
        (f"models[{i}].parameters", m.parameters) for i, m in enumerate(recipe.models)
    ]
    for where, params in places:
        for key in params:
            allowed = known if where == "parameters" else set(method.per_model)
            if key not in allowed:
                choices = sorted(allowed) or ["(none)"]
                raise RecipeError(
                    f"{where}: {method.name} has no parameter {key!r}."
                    f"{did_you_mean(key, choices)}",
                    fix=f"{method.name} takes: {', '.join(choices)} (see `merge3 methods`).",
                )


def plan_merge(recipe: Recipe, *, allow_pickle: bool = False) -> MergePlan:
    """Validate a recipe against its models (all checks that need no tensor data)."""
    method = get_method(recipe.merge_method)
    _check_parameters(recipe, method)
    if method.base == "required" and not recipe.base_model:
        raise RecipeError(f"{method.name} needs a base model.",
                          fix="add `base_model: <path>` to the recipe.")

    def open_ckpt(reference: str) -> Checkpoint:
        return Checkpoint(resolve_model(reference), allow_pickle=allow_pickle)

    base = open_ckpt(recipe.base_model) if recipe.base_model else None
    entries = list(recipe.models)
    if base is not None and method.base != "unused":
        # mergekit lists the base among `models`; it is not an input of its own here.
        entries = [e for e in entries
                   if Path(resolve_model(e.model)).resolve() != base.path.resolve()]
    inputs = [open_ckpt(e.model) for e in entries]
    count = len(inputs)
    if count < method.min_models or (method.max_models and count > method.max_models):
        span = (f"exactly {method.min_models}" if method.max_models == method.min_models
                else f"at least {method.min_models}")
        raise RecipeError(f"{method.name} merges {span} model(s) besides the base; got {count}.",
                          fix="list the models to merge under `models`.")
    input_settings = []
    for entry in entries:
        settings = {}
        for key, default in method.per_model.items():
            chain = [s[key] for s in (entry.parameters, recipe.parameters) if key in s]
            if not chain and default is None:
                raise RecipeError(f"models: {entry.model} needs parameter {key!r}.",
                                  fix=f"add `parameters: {{{key}: ...}}` to it.")
            settings[key] = Fallback([*chain, default])
        input_settings.append(settings)
    global_settings = {
        k: Fallback([recipe.parameters[k], d]) if k in recipe.parameters else d
        for k, d in method.global_params.items()
    }

    reference = base if base is not None else inputs[0]
    _check_compatible(reference, [c for c in inputs if c is not reference])
    out_dtype = DTYPES[recipe.output_dtype] if recipe.output_dtype else None
    indices = [i for n in reference.names() if (i := layer_index(n)) is not None]
    num_layers = reference.num_layers() or (max(indices) + 1 if indices else 1)
    return MergePlan(recipe, method, base, inputs, input_settings, global_settings,
                     reference.names(), num_layers, out_dtype)


def _check_compatible(reference: Checkpoint, others: list[Checkpoint]) -> None:
    for other in others:
        if reference.architecture and other.architecture and (
            reference.architecture != other.architecture
        ):
            raise MergeError(
                f"Architectures differ: {reference.path} is {reference.architecture}, "
                f"{other.path} is {other.architecture}.",
                fix="merge only models fine-tuned from the same base architecture.",
            )
        missing = [n for n in reference.names() if n not in other]
        if missing:
            raise MergeError(
                f"Tensor {missing[0]!r} is in {reference.path} but missing from {other.path}"
                f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}.",
                fix="all models must share one architecture and tensor names.",
            )
        extra = [n for n in other.names() if n not in reference]
        if extra:
            raise MergeError(
                f"Tensor {extra[0]!r} is in {other.path} but not in {reference.path}.",
                fix="all models must share one architecture and tensor names.",
            )
        for name in reference.names():
            want, got = reference.info(name).shape, other.info(name).shape
            if want != got:
                raise MergeError(
                    f"Shape mismatch for tensor {name!r}: {list(got)} in {other.path} vs "
                    f"{list(want)} in {reference.path}.",
                    fix="merge only models of the same size and architecture.",
                )


def layer_position(name: str, num_layers: int) -> float:
    """mergekit's gradient position: t = i/(L−1) in layer i of L, 0 outside the layers."""
    index = layer_index(name)
    if index is None:
        return 0.0
    return index / (num_layers - 1) if num_layers > 1 else 1.0


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, tensor name): a merge is reproducible tensor by tensor."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def merge_tensor(
    method: MergeMethod,
    name: str,
    base: torch.Tensor | None,
    tensors: list[torch.Tensor],
    input_settings: list[Mapping[str, Any]],
    global_settings: Mapping[str, Any],
    *,
    t: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Merge one tensor in float32 (float64 stays float64); returns the float result."""
    work = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    params: dict[str, Any] = {
        key: [resolve_parameter(s[key], name, t) for s in input_settings]
        for key in method.per_model
    }
    params.update({k: resolve_parameter(v, name, t) for k, v in global_settings.items()})
    return method(
        [x.to(work) for x in tensors],
        None if base is None else base.to(work),
        name=name,
        generator=tensor_generator(seed, name) if method.wants_generator else None,
        **params,
    )


def _check_finite(tensor: torch.Tensor, name: str, source: Checkpoint) -> None:
    # A float32 sum is NaN/Inf whenever an entry is (the fast path); only then look closer.
    if bool(torch.isfinite(tensor.sum())):
        return
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(
            f"Tensor {name!r} in {source.path} contains NaN or Inf values.",
            fix="this checkpoint is corrupt or diverged; re-export it or leave it out.",
        )


# Elementwise methods merge big tensors in slices of this many elements, so the float32
# working copies stay small however large the embedding matrix is.
CHUNK_ELEMENTS = 1 << 22


def _merge_one(plan: MergePlan, name: str, ref_tensor: torch.Tensor,
               raw: list[torch.Tensor], seed: int) -> torch.Tensor:
    """One output tensor: inputs in their stored dtype, arithmetic in float32 (float64
    stays float64), the result in the output dtype."""
    work = torch.float64 if ref_tensor.dtype == torch.float64 else torch.float32
    out_dtype = plan.out_dtype or ref_tensor.dtype
    t = layer_position(name, plan.num_layers)
    numel = ref_tensor.numel()
    step = CHUNK_ELEMENTS if plan.method.elementwise else max(numel, 1)
    out = None if step >= numel else torch.empty(numel, dtype=out_dtype)
    for start in range(0, max(numel, 1), step):
        part = slice(start, start + step)

        def load(tensor: torch.Tensor, part: slice = part) -> torch.Tensor:
            return (tensor if out is None else tensor.reshape(-1)[part]).to(work)

        ref_work = load(ref_tensor)
        tensors = [ref_work if x is ref_tensor else load(x) for x in raw]
        sources = list(zip(tensors, plan.inputs))
        if plan.base is not None:
            sources.append((ref_work, plan.base))
        if plan.method.masks:  # a mask could hide a NaN: check every input
            for tensor, ckpt in sources:
                _check_finite(tensor, name, ckpt)
        base_work = ref_work if plan.base is not None else None
        merged = merge_tensor(plan.method, name, base_work, tensors,
                              plan.input_settings, plan.global_settings, t=t, seed=seed)
        if not bool(torch.isfinite(merged.sum())):  # a NaN/Inf input propagates here
            for tensor, ckpt in sources:
                _check_finite(tensor, name, ckpt)
            raise MergeError(f"Merging tensor {name!r} produced NaN or Inf values.",
                             fix="check the recipe's parameters (e.g. a huge lambda).")
        if out is None:
            return merged.to(out_dtype)
        out[part] = merged.to(out_dtype)
    return out.reshape(ref_tensor.shape)


def _align_inputs(plan: MergePlan) -> list[dict[str, torch.Tensor]]:
    """Load every input whole and permute them into one frame (alignment methods only)."""
    from merge3.methods.alignment import align_state_dicts

    states = []
    for ckpt in plan.inputs:
        state = {n: t.float() if t.is_floating_point() else t for n, t in ckpt.items()}
        for name, tensor in state.items():
            _check_finite(tensor, name, ckpt)
        states.append(state)
    options = {k: resolve_parameter(plan.global_settings[k], "", 0.0)
               for k in ("max_iter", "anchor", "seed")}
    return align_state_dicts(plan.method.align, states, max_iter=int(options["max_iter"]),
                             anchor=int(options["anchor"]), seed=int(options["seed"]))


def run_merge(
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    *,
    out_shard_size: str | int = "5GB",
    overwrite: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
    on_tensor: Callable[[str], None] | None = None,
) -> Path:
    """Merge per ``recipe`` into ``out_dir`` (written to a temp dir, renamed when complete)."""
    plan = plan_merge(recipe, allow_pickle=allow_pickle)
    reference = plan.reference
    aligned = _align_inputs(plan) if plan.method.align else None
    with CheckpointWriter(out_dir, max_shard_bytes=parse_size(out_shard_size),
                          overwrite=overwrite) as writer:
        for name in tqdm(plan.names, desc=f"merge ({plan.method.name})", unit="tensor",
                         disable=not progress):
            ref_tensor = reference.get(name)
            if not ref_tensor.is_floating_point():
                writer.add(name, ref_tensor)  # integer/bool buffers: copied from the base
                continue
            if aligned is not None:
                raw = [state[name] for state in aligned]
            else:
                raw = [ref_tensor if ckpt is reference else ckpt.get(name)
                       for ckpt in plan.inputs]
            out = _merge_one(plan, name, ref_tensor, raw, recipe.seed)
            writer.add(name, out)
            if on_tensor is not None:
                on_tensor(name)
        tokenizer_dir = reference.path
        if recipe.tokenizer_source not in (None, "base"):
            if recipe.tokenizer_source == "union":
                raise RecipeError("tokenizer_source: union is not supported.",
                                  fix="use `base` or a model path.")
            tokenizer_dir = resolve_model(recipe.tokenizer_source)
        updates = {}
        if plan.out_dtype is not None:
            dtype_name = str(plan.out_dtype).removeprefix("torch.")
            keys = [k for k in ("dtype", "torch_dtype") if k in reference.config] or ["dtype"]
            updates = dict.fromkeys(keys, dtype_name)
        recipe_text = yaml.safe_dump(recipe.model_dump(exclude_none=True, exclude_defaults=True),
                                     sort_keys=False)
        return writer.finish(
            copy_from=tokenizer_dir,
            config_updates=updates,
            extra_files={"merge3_recipe.yaml": recipe_text},
        )


def merge_state_dicts(
    method: MergeMethod | str,
    base: Mapping[str, torch.Tensor] | None,
    models: list[Mapping[str, torch.Tensor]],
    input_settings: list[Mapping[str, Any]],
    global_settings: Mapping[str, Any] | None = None,
    *,
    num_layers: int | None = None,
    seed: int = 0,
    out_dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Merge in memory (what a search worker does per candidate; no disk).

    Same semantics as :func:`run_merge`: parameters resolve per tensor (gradients,
    filters), integer buffers come from the base, arithmetic is float32.
    """
    method = get_method(method) if isinstance(method, str) else method
    reference = base if base is not None else models[0]
    if num_layers is None:
        indices = [i for n in reference if (i := layer_index(n)) is not None]
        num_layers = max(indices) + 1 if indices else 1
    settings = [dict(s) for s in input_settings]
    for s in settings:
        for key, default in method.per_model.items():
            s.setdefault(key, default)
    globals_ = {**method.global_params, **(global_settings or {})}
    merged = {}
    for name, ref_tensor in reference.items():
        if not ref_tensor.is_floating_point():
            merged[name] = ref_tensor
            continue
        result = merge_tensor(method, name, base[name] if base is not None else None,
                              [m[name] for m in models], settings, globals_,
                              t=layer_position(name, num_layers), seed=seed)
        merged[name] = result.to(out_dtype or ref_tensor.dtype)
    return merged
