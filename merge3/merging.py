"""``merge3 merge``: validate a recipe against its checkpoints, then stream the merge.

Every check that needs no tensor data runs first (methods, parameters, models,
architectures, names, shapes). The merge itself is :func:`merge3.executor.merge_model`
over the checkpoints, read lazily: peak memory is about (number of models) × (largest
tensor) plus one output shard, and the output is written to a temp dir and renamed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from merge3.checkpoints import DTYPES, Checkpoint, CheckpointWriter, parse_size
from merge3.errors import MergeError, RecipeError
from merge3.executor import MergeJob, check_parameters, count_layers, merge_job, merge_model
from merge3.methods import MergeMethod, get_method
from merge3.models import check_output_path, resolve_model
from merge3.recipe import Recipe
from merge3.slices import SlicePlan, merge_slices, plan_slices, whole_model_recipe

__all__ = ["MergePlan", "plan_merge", "run_merge", "check_compatible"]


@dataclass
class MergePlan:
    """A validated merge: the method, opened checkpoints and per-model parameter settings.

    For a recipe whose ``slices`` cut layers, ``slices`` is the output plan (which source
    tensors each output tensor is merged from) and ``inputs`` every model it reads.
    """

    recipe: Recipe
    method: MergeMethod
    base: Checkpoint | None
    inputs: list[Checkpoint]
    job: MergeJob
    names: list[str]
    slices: SlicePlan | None = None

    @property
    def reference(self) -> Checkpoint:
        return self.base if self.base is not None else self.inputs[0]


def plan_merge(recipe: Recipe, *, allow_pickle: bool = False) -> MergePlan:
    """Validate a recipe against its models (all checks that need no tensor data)."""
    method = get_method(recipe.merge_method)
    check_parameters(recipe, method)

    def open_ckpt(reference: str) -> Checkpoint:
        return Checkpoint(resolve_model(reference), allow_pickle=allow_pickle)

    if recipe.slices is not None:
        whole = whole_model_recipe(recipe, method, open_ckpt)
        if whole is None:
            return _plan_slices(recipe, method, open_ckpt)
        recipe = whole
    if method.base == "required" and not recipe.base_model:
        raise RecipeError(f"{method.name} needs a base model.",
                          fix="add `base_model: <path>` to the recipe.")

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
    reference = base if base is not None else inputs[0]
    check_compatible(reference, [c for c in inputs if c is not reference])
    out_dtype = DTYPES[recipe.output_dtype] if recipe.output_dtype else None
    num_layers = reference.num_layers() or count_layers(reference.names())
    job = merge_job(recipe, entries=entries, num_layers=num_layers,
                    out_dtype=out_dtype)
    return MergePlan(recipe, method, base, inputs, job, reference.names())


def _plan_slices(recipe: Recipe, method: MergeMethod,
                 open_ckpt: Callable[[str], Checkpoint]) -> MergePlan:
    """The plan of a recipe whose slices cut layers (a frankenmerge): merge3.slices."""
    plan = plan_slices(recipe, method, open_ckpt)
    base = open_ckpt(recipe.base_model) if recipe.base_model else None
    out_dtype = DTYPES[recipe.output_dtype] if recipe.output_dtype else None
    job = MergeJob(method, [], {}, plan.num_layers, recipe.seed, out_dtype)
    return MergePlan(recipe, method, base, plan.checkpoints, job, plan.names, slices=plan)


def _floating(checkpoint: Checkpoint, name: str) -> bool:
    return checkpoint.info(name).dtype.is_floating_point


def check_compatible(reference: Checkpoint, others: list[Checkpoint]) -> None:
    for other in others:
        if reference.architecture and other.architecture and (
            reference.architecture != other.architecture
        ):
            raise MergeError(
                f"Architectures differ: {reference.path} is {reference.architecture}, "
                f"{other.path} is {other.architecture}.",
                fix="merge only models fine-tuned from the same base architecture.",
            )
        # Integer and bool buffers (position ids and the like) come from the reference in
        # every merge, so a model may lack them or carry more of them: only float tensors
        # must match (a base shipped with `embeddings.position_ids` merges with experts
        # re-saved without it).
        missing = [n for n in reference.names() if n not in other and _floating(reference, n)]
        if missing:
            raise MergeError(
                f"Tensor {missing[0]!r} is in {reference.path} but missing from {other.path}"
                f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}.",
                fix="all models must share one architecture and tensor names.",
            )
        extra = [n for n in other.names() if n not in reference and _floating(other, n)]
        if extra:
            raise MergeError(
                f"Tensor {extra[0]!r} is in {other.path} but not in {reference.path}.",
                fix="all models must share one architecture and tensor names.",
            )
        for name in reference.names():
            if name not in other:
                continue
            want, got = reference.info(name).shape, other.info(name).shape
            if want != got:
                raise MergeError(
                    f"Shape mismatch for tensor {name!r}: {list(got)} in {other.path} vs "
                    f"{list(want)} in {reference.path}.",
                    fix="merge only models of the same size and architecture.",
                )


def run_merge(
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    *,
    out_shard_size: str | int = "5GB",
    overwrite: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
    on_tensor: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> Path:
    """Merge per ``recipe`` into ``out_dir`` (written to a temp dir, renamed when complete);
    ``device`` (e.g. ``cuda``) is where the arithmetic runs, as mergekit's ``--cuda``."""
    plan = plan_merge(recipe, allow_pickle=allow_pickle)
    reference = plan.reference
    tokenizer_dir = reference.path
    if recipe.tokenizer_source not in (None, "base"):
        if recipe.tokenizer_source == "union":
            raise RecipeError("tokenizer_source: union is not supported.",
                              fix="use `base` or a model path.")
        tokenizer_dir = resolve_model(recipe.tokenizer_source)
    inputs = [c.path for c in plan.inputs] + [tokenizer_dir]
    check_output_path(out_dir, inputs + ([plan.base.path] if plan.base else []))
    names = tqdm(plan.names, desc=f"merge ({plan.method.name})", unit="tensor",
                 disable=not progress)
    with CheckpointWriter(out_dir, max_shard_bytes=parse_size(out_shard_size),
                          overwrite=overwrite) as writer:
        if plan.slices is not None:
            merged = merge_slices(plan.slices, plan.method, seed=plan.job.seed,
                                  out_dtype=plan.job.out_dtype, device=device,
                                  on_tensor=on_tensor)
            for _, (name, tensor) in zip(names, merged):  # names: the progress bar
                writer.add(name, tensor.cpu())
        else:
            for name, tensor in merge_model(plan.job, plan.base, plan.inputs, names,
                                            device=device, on_tensor=on_tensor):
                writer.add(name, tensor.cpu())
        updates = dict(plan.slices.config_updates) if plan.slices is not None else {}
        if plan.job.out_dtype is not None:
            dtype_name = str(plan.job.out_dtype).removeprefix("torch.")
            keys = [k for k in ("dtype", "torch_dtype") if k in reference.config] or ["dtype"]
            updates.update(dict.fromkeys(keys, dtype_name))
        recipe_text = yaml.safe_dump(recipe.model_dump(exclude_none=True, exclude_defaults=True),
                                     sort_keys=False)
        return writer.finish(
            copy_from=tokenizer_dir,
            config_updates=updates,
            extra_files={"merge3_recipe.yaml": recipe_text},
        )
