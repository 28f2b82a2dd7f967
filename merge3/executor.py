"""The merge executor: every merge in merge3 goes through these two functions.

``merge_tensor`` merges one tensor: inputs in their stored dtype on any device,
arithmetic in float32 (float64 stays float64), the result in the chosen output dtype.
``merge_model`` walks a model tensor by tensor over any tensor sources — checkpoints
read lazily from disk (``merge3 merge``), state dicts held by a search worker, the zoo's
models in memory — and yields each merged tensor, so peak memory is about (number of
inputs) × (largest tensor). A :class:`MergeCache` keeps what does not change between
merges of the same inputs (a method's ``precompute`` hook, e.g. TSV-M's orthogonalised
factors; alignment permutations; which tensors no input changed), which is what makes a
search worker's hundredth candidate cheap; without a cache the same hooks run inline,
so a cached and an uncached merge compute the same numbers in the same order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from merge3.errors import CheckpointError, MergeError, RecipeError
from merge3.methods import MergeMethod, get_method
from merge3.methods.base import NOT_COMPUTED
from merge3.recipe import Conditional, Fallback, ModelEntry, Recipe, resolve_parameter
from merge3.registry import did_you_mean
from merge3.task_vectors import layer_index

__all__ = ["MergeJob", "MergeCache", "StateDict", "TensorSource", "merge_job", "merge_tensor",
           "merge_model", "check_parameters", "check_settings", "check_finite", "layer_position",
           "tensor_generator", "count_layers"]

# Elementwise methods merge big tensors in slices of this many elements, so the float32
# working copies stay small however large the embedding matrix is.
CHUNK_ELEMENTS = 1 << 22


class TensorSource(Protocol):
    """Where a merge reads tensors from: a ``Checkpoint`` or a :class:`StateDict`."""

    def get(self, name: str) -> torch.Tensor: ...


@dataclass(frozen=True)
class StateDict:
    """A state dict in memory as a tensor source, with a label for error messages."""

    tensors: Mapping[str, torch.Tensor]
    label: str = "state dict"

    def get(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def names(self) -> list[str]:
        return list(self.tensors)


def _label(source: object) -> str:
    return str(getattr(source, "path", None) or getattr(source, "label", source))


def layer_position(name: str, num_layers: int) -> float:
    """mergekit's gradient position: t = i/(L−1) in layer i of L, 0 outside the layers."""
    index = layer_index(name)
    if index is None:
        return 0.0
    return index / (num_layers - 1) if num_layers > 1 else 1.0


def count_layers(names: Iterable[str]) -> int:
    """1 + the largest layer index among tensor names (1 when there are no layers)."""
    indices = [i for n in names if (i := layer_index(n)) is not None]
    return max(indices) + 1 if indices else 1


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, tensor name): a merge is reproducible tensor by tensor."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


@dataclass(frozen=True)
class MergeJob:
    """A merge with every setting resolved except the per-tensor values (gradients and
    filters resolve per tensor name)."""

    method: MergeMethod
    input_settings: Sequence[Mapping[str, Any]]  # per input model: parameter -> setting
    global_settings: Mapping[str, Any]
    num_layers: int = 1
    seed: int = 0
    out_dtype: torch.dtype | None = None  # None: the reference tensor's dtype


def check_parameters(recipe: Recipe, method: MergeMethod) -> None:
    """Every parameter the recipe sets exists for ``method`` (per-model ones on the models)
    and lies in its valid range."""
    check_settings(method, "parameters", recipe.parameters, method.parameter_names)
    for i, entry in enumerate(recipe.models):
        check_settings(method, f"models[{i}].parameters", entry.parameters,
                       set(method.per_model))


def check_settings(method: MergeMethod, where: str, params: Mapping[str, Any],
                   allowed: set[str]) -> None:
    """Refuse a parameter of ``params`` (found at ``where`` in the recipe) that is not in
    ``allowed``, with a "did you mean", or whose value is outside the method's range."""
    for key, setting in params.items():
        if key not in allowed:
            choices = sorted(allowed) or ["(none)"]
            raise RecipeError(
                f"{where}: {method.name} has no parameter {key!r}."
                f"{did_you_mean(key, choices)}",
                fix=f"{method.name} takes: {', '.join(choices)} (see `merge3 methods`).",
            )
        _check_range(method, where, key, setting)


def _numbers(setting: Any) -> Iterator[Any]:
    """Every literal value in a setting (a scalar, a gradient, a filter list)."""
    if isinstance(setting, Conditional):
        yield from _numbers(setting.value)
    elif isinstance(setting, list):
        for item in setting:
            yield from _numbers(item)
    else:
        yield setting


def _check_range(method: MergeMethod, where: str, key: str, setting: Any) -> None:
    low, high = method.ranges.get(key, (None, None))
    if low is None and high is None:
        return
    span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    for value in _numbers(setting):
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or (low is not None and number < low) or (
                high is not None and number > high):
            raise RecipeError(f"{where}.{key}: {value!r} is outside the valid "
                              f"range of {method.name}'s {key}, {span}.",
                              fix=f"give {key} a number in {span} (see `merge3 methods "
                                  f"{method.name}`).")


def _check_weight_sum(recipe: Recipe, job: MergeJob) -> None:
    """Normalising by weights that sum to 0 is undefined: refuse it up front (checked at
    every layer position, for settings that do not depend on the tensor's name)."""
    method = job.method
    if "weight" not in method.per_model or "normalize" not in method.global_params:
        return
    if resolve_parameter(job.global_settings["normalize"], "", 0.0) is not True:
        return
    layers = max(job.num_layers, 1)
    for t in {0.0, *(i / (layers - 1) if layers > 1 else 1.0 for i in range(layers))}:
        weights = [resolve_parameter(s["weight"], "", t) for s in job.input_settings]
        if all(isinstance(w, int | float) for w in weights) and abs(sum(weights)) < 1e-8:
            raise RecipeError(f"{method.name}: with normalize: true the model weights sum to "
                              f"{sum(weights):g} (at layer position t = {t:.2f}), and "
                              "normalising divides by that sum.",
                              fix="give weights with a non-zero sum, or set normalize: false.")


def merge_job(recipe: Recipe, *, entries: Sequence[ModelEntry] | None = None,
              num_layers: int = 1, out_dtype: torch.dtype | None = None) -> MergeJob:
    """The job of ``recipe`` over its input ``entries`` (default: ``recipe.models``).

    A per-model parameter is looked up on the model, then in the recipe's global
    ``parameters``, then in the method's default (mergekit's order); a filter list that
    matches nothing for a tensor falls through to the next.
    """
    method = get_method(recipe.merge_method)
    check_parameters(recipe, method)
    input_settings = []
    for entry in recipe.models if entries is None else entries:
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
    job = MergeJob(method, input_settings, global_settings, num_layers, recipe.seed, out_dtype)
    _check_weight_sum(recipe, job)
    return job


def check_finite(tensor: torch.Tensor, name: str, label: str) -> None:
    """Raise naming the tensor and its source when ``tensor`` holds NaN or Inf."""
    # A float32 sum is NaN/Inf whenever an entry is (the fast path); only then look closer.
    if bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all()):
        return
    raise CheckpointError(
        f"Tensor {name!r} in {label} contains NaN or Inf values.",
        fix="this checkpoint is corrupt or diverged; re-export it or leave it out.",
    )


def _resolved(method: MergeMethod, name: str, t: float,
              input_settings: Sequence[Mapping[str, Any]],
              global_settings: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        key: [resolve_parameter(s.get(key, method.per_model[key]), name, t)
              for s in input_settings]
        for key in method.per_model
    }
    params.update({k: resolve_parameter(v, name, t) for k, v in global_settings.items()})
    return params


def merge_tensor(
    method: MergeMethod,
    name: str,
    base: torch.Tensor | None,
    tensors: Sequence[torch.Tensor],
    input_settings: Sequence[Mapping[str, Any]],
    global_settings: Mapping[str, Any],
    *,
    t: float = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    out_dtype: torch.dtype | None = None,
    precomputed: Any = NOT_COMPUTED,
    labels: Sequence[str] | None = None,
    model_stats: Any = None,
) -> torch.Tensor:
    """Merge one tensor: float32 arithmetic (float64 stays float64) on ``device`` (default:
    where the inputs are), the result in ``out_dtype`` (default: the working dtype).

    ``labels`` name the inputs (then the base) in the error raised when an input holds
    NaN/Inf; ``precomputed`` is the method's genome-independent work for this tensor when
    the caller cached it; ``model_stats`` the result of its whole-model pass, where the
    caller (``merge_model``) ran one. Elementwise methods work on slices of large tensors.
    """
    first = tensors[0]
    work = torch.float64 if first.dtype == torch.float64 else torch.float32
    device = torch.device(device) if device is not None else first.device
    params = _resolved(method, name, t, input_settings, global_settings)
    sources = list(tensors) + ([] if base is None else [base])
    names = list(labels) if labels is not None else [f"input {i}" for i in range(len(sources))]
    numel = first.numel()
    step = CHUNK_ELEMENTS if method.elementwise else max(numel, 1)
    out = None if step >= numel else torch.empty(numel, dtype=out_dtype or work, device=device)
    for start in range(0, max(numel, 1), step):
        part = slice(start, start + step)

        def load(x: torch.Tensor, part: slice = part) -> torch.Tensor:
            return (x if out is None else x.reshape(-1)[part]).to(device=device, dtype=work)

        inputs = [load(x) for x in tensors]
        base_work = None if base is None else load(base)
        if method.masks:  # a mask could hide a NaN: check every input
            for x, label in zip([*inputs, base_work], names):
                if x is not None:
                    check_finite(x, name, label)
        if precomputed is NOT_COMPUTED and method.precompute is not None:
            precomputed = method.prepare(inputs, base_work, name=name, **params)
        merged = method(
            inputs, base_work, name=name,
            generator=tensor_generator(seed, name) if method.wants_generator else None,
            precomputed=precomputed, model_stats=model_stats, **params,
        )
        if not bool(torch.isfinite(merged.sum())):  # a NaN/Inf input propagates here
            for x, label in zip([*inputs, base_work], names):
                if x is not None:
                    check_finite(x, name, label)
            raise MergeError(f"Merging tensor {name!r} produced NaN or Inf values.",
                             fix="check the recipe's parameters (e.g. a huge lambda).")
        if out is None:
            return merged if out_dtype is None else merged.to(out_dtype)
        out[part] = merged.to(out.dtype)
    return out.reshape(first.shape)


@dataclass
class MergeCache:
    """What stays the same between merges of the same inputs (one search worker's).

    Valid only while the base and the inputs do not change: build one per set of inputs.
    """

    precomputed: dict[tuple, Any] = field(default_factory=dict)
    unchanged: dict[str, bool] = field(default_factory=dict)
    aligned: dict[tuple, list[StateDict]] = field(default_factory=dict)
    model_memo: dict[str, dict] = field(default_factory=dict)  # per method: its model pass'


def _precompute_key(method: MergeMethod, name: str, params: Mapping[str, Any]) -> tuple:
    return (method.name, name, tuple(repr(params[k]) for k in method.precompute_params))


def aligned_inputs(job: MergeJob, inputs: Sequence[TensorSource], names: Sequence[str],
                   cache: MergeCache | None = None) -> list[StateDict]:
    """Every input loaded whole and permuted into one frame (alignment methods only)."""
    from merge3.methods.alignment import align_state_dicts

    options = {k: int(resolve_parameter(job.global_settings[k], "", 0.0))
               for k in ("max_iter", "anchor", "seed")}
    key = (job.method.align, options["max_iter"], options["anchor"], options["seed"])
    if cache is not None and key in cache.aligned:
        return cache.aligned[key]
    states = []
    for source in inputs:
        state = {}
        for name in names:
            tensor = source.get(name)
            if tensor.is_floating_point():
                tensor = tensor.float()
                check_finite(tensor, name, _label(source))
            state[name] = tensor
        states.append(state)
    aligned = align_state_dicts(job.method.align, states, **options)
    result = [StateDict(s, f"{_label(src)} (aligned)") for s, src in zip(aligned, inputs)]
    if cache is not None:
        cache.aligned[key] = result
    return result


def merge_model(
    job: MergeJob,
    base: TensorSource | None,
    inputs: Sequence[TensorSource],
    names: Iterable[str],
    *,
    device: torch.device | str | None = None,
    cache: MergeCache | None = None,
    on_tensor: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Merge tensor by tensor, yielding ``(name, merged tensor)`` in ``names`` order.

    Integer and bool buffers come from the reference (the base, else the first input).
    For a method that uses a base, a tensor no input changed is the base's: every such
    method maps zero task vectors to θ_0 (and the SVD methods need not factor zeros).
    """
    names = list(names)
    method = job.method
    reference = base if base is not None else inputs[0]
    if method.align:
        inputs = aligned_inputs(job, inputs, names, cache)
    labels = [_label(s) for s in inputs] + ([] if base is None else [_label(base)])
    uses_base = base is not None and method.base != "unused"
    model_stats = None
    if method.model_pass is not None:
        from merge3.model_pass import run_model_pass

        model_stats = run_model_pass(job, base if uses_base else None, reference, inputs,
                                     names, device, cache)
    for name in names:
        ref_tensor = reference.get(name)
        if not ref_tensor.is_floating_point():
            yield name, ref_tensor
            continue
        tensors = [ref_tensor if src is reference else src.get(name) for src in inputs]
        if uses_base and _unchanged(name, ref_tensor, tensors, cache):
            yield name, ref_tensor.to(device=device or ref_tensor.device,
                                      dtype=job.out_dtype or ref_tensor.dtype)
        else:
            yield name, _merge_cached(job, name, ref_tensor, tensors, uses_base, labels,
                                      device, cache, model_stats)
        if on_tensor is not None:
            on_tensor(name)


def _merge_cached(job: MergeJob, name: str, ref_tensor: torch.Tensor,
                  tensors: list[torch.Tensor], uses_base: bool, labels: list[str],
                  device: torch.device | str | None, cache: MergeCache | None,
                  model_stats: Any = None) -> torch.Tensor:
    method = job.method
    out_dtype = job.out_dtype or ref_tensor.dtype
    t = layer_position(name, job.num_layers)
    precomputed = NOT_COMPUTED
    if cache is not None and method.precompute is not None:
        params = _resolved(method, name, t, job.input_settings, job.global_settings)
        key = _precompute_key(method, name, params)
        if key not in cache.precomputed:
            work = torch.float64 if ref_tensor.dtype == torch.float64 else torch.float32
            dev = device or ref_tensor.device
            cache.precomputed[key] = method.prepare(
                [x.to(device=dev, dtype=work) for x in tensors],
                ref_tensor.to(device=dev, dtype=work) if uses_base else None, name=name,
                **params)
        precomputed = cache.precomputed[key]
    return merge_tensor(method, name, ref_tensor if uses_base else None, tensors,
                        job.input_settings, job.global_settings, t=t, seed=job.seed,
                        device=device, out_dtype=out_dtype, precomputed=precomputed,
                        labels=labels, model_stats=model_stats)


def _unchanged(name: str, base: torch.Tensor, tensors: Sequence[torch.Tensor],
               cache: MergeCache | None) -> bool:
    if cache is not None and name in cache.unchanged:
        return cache.unchanged[name]
    same = all(x is base or torch.equal(x, base) for x in tensors)
    if cache is not None:
        cache.unchanged[name] = same
    return same
