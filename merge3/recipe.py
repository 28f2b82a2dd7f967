"""The YAML merge recipe: mergekit's schema where the methods overlap, unknown keys refused.

    merge_method: ties
    base_model: path/to/base
    models:
      - model: path/to/expert_a
        parameters: {weight: 1.0, density: 0.5}
      - model: path/to/expert_b
        parameters: {weight: [0.2, 1.0], density: 0.5}   # a gradient across layers
    parameters: {normalize: true, lambda: 1.0}
    dtype: bfloat16

A parameter value is a scalar, a list of numbers interpolated across the layers (as
mergekit's gradients: layer i of L takes t = i/(L−1); tensors outside the layers take
t = 0), or a list of ``{filter: substring, value: ...}`` where the first filter found
in the tensor's name wins (``filter`` omitted or ``"*"`` matches everything).

Instead of ``models``, mergekit's ``slices`` stack layer ranges of models (frankenmerges,
usually with ``passthrough``); each slice merges its sources' layers with the method:

    merge_method: passthrough
    slices:
      - sources: [{model: path/to/a, layer_range: [0, 24]}]
      - sources: [{model: path/to/b, layer_range: [8, 32]}]

Gradients then run across each slice's own layers (see :mod:`merge3.slices`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from merge3.errors import RecipeError
from merge3.registry import did_you_mean

__all__ = ["Recipe", "ModelEntry", "Fallback", "load_recipe", "resolve_parameter",
           "ParameterSetting"]

DTypeName = Literal["float32", "float16", "bfloat16", "fp32", "fp16", "bf16"]


class Conditional(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filter: str | None = None
    value: Union[float, int, bool, str, list[float]]  # noqa: UP007 (pydantic union order)


Scalar = Union[bool, int, float, str]  # noqa: UP007
ParameterSetting = Union[Scalar, list[float], list[Conditional]]  # noqa: UP007


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    parameters: dict[str, ParameterSetting] = Field(default_factory=dict)


class SliceSource(BaseModel):
    """One model's layers [start, end) in an output slice (mergekit's InputSliceDefinition)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    layer_range: tuple[int, int]
    parameters: dict[str, ParameterSetting] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _range(self) -> SliceSource:
        start, end = self.layer_range
        if start < 0 or end < start:
            raise ValueError(f"layer_range [{start}, {end}] of {self.model} must satisfy "
                             "0 <= start <= end (layers start..end-1)")
        return self


class Slice(BaseModel):
    """Output layers built from the same number of layers of each source, merged by the
    recipe's method (mergekit's OutputSliceDefinition). ``parameters`` sit between the
    sources' and the recipe's; ``residual_weight`` is accepted and, as in mergekit 0.1.5,
    changes nothing."""

    model_config = ConfigDict(extra="forbid")
    sources: list[SliceSource] = Field(min_length=1)
    base_model: str | None = None
    parameters: dict[str, ParameterSetting] = Field(default_factory=dict)
    residual_weight: float | None = None

    @model_validator(mode="after")
    def _same_length(self) -> Slice:
        lengths = {s.layer_range[1] - s.layer_range[0] for s in self.sources}
        if len(lengths) > 1:
            ranges = ", ".join(f"{s.model} {list(s.layer_range)}" for s in self.sources)
            raise ValueError(f"all sources of a slice must span the same number of layers "
                             f"(got {ranges})")
        return self

    @property
    def num_layers(self) -> int:
        start, end = self.sources[0].layer_range
        return end - start


class Recipe(BaseModel):
    """A validated merge recipe."""

    model_config = ConfigDict(extra="forbid")

    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry] = Field(default_factory=list)
    slices: list[Slice] | None = None
    parameters: dict[str, ParameterSetting] = Field(default_factory=dict)
    dtype: DTypeName | None = None
    out_dtype: DTypeName | None = None
    tokenizer_source: str | None = None
    name: str | None = None
    seed: int = 0  # merge3: seeds random methods (DARE) per tensor

    @model_validator(mode="after")
    def _models_or_slices(self) -> Recipe:
        """mergekit's rule: a recipe lists `models` or `slices`, not both. Slices stay as
        given: whether they span whole models is known once the checkpoints are open
        (:func:`merge3.slices.whole_model_recipe`)."""
        if self.slices is None:
            return self
        if self.models:
            raise ValueError("give either `models` or `slices`, not both")
        if not self.slices:
            raise ValueError("`slices` is empty: list at least one slice")
        return self

    @property
    def output_dtype(self) -> str | None:
        return self.out_dtype or self.dtype

    def resolve_paths(self, root: Path) -> Recipe:
        """Make relative local model paths relative to ``root`` (the recipe's folder)."""

        def fix(path: str) -> str:
            if path.startswith(("zoo:", "hf:")) or os.path.isabs(path):
                return path
            candidate = root / path
            return str(candidate) if candidate.exists() else path

        copy = self.model_copy(deep=True)
        if copy.base_model:
            copy.base_model = fix(copy.base_model)
        for entry in copy.models:
            entry.model = fix(entry.model)
        for part in copy.slices or []:
            if part.base_model:
                part.base_model = fix(part.base_model)
            for source in part.sources:
                source.model = fix(source.model)
        return copy


def _format_validation_error(err: ValidationError, source: str) -> RecipeError:
    errors = err.errors()
    # an unknown key explains the rest (a misspelt key also leaves its field missing)
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    location = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        known = _known_keys(first["loc"])
        return RecipeError(
            f"{source}: unknown key {location!r}.{did_you_mean(key, known)}",
            fix=f"remove it, or use one of: {', '.join(sorted(known))}.",
        )
    message = first["msg"].removeprefix("Value error, ")
    return RecipeError(f"{source}: {location + ': ' if location else ''}{message}.",
                       fix="see `merge3 merge --help` for the recipe format.")


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    if "models" in loc and len(loc) > 2:
        return list(ModelEntry.model_fields)
    if "sources" in loc and len(loc) > 4:
        return list(SliceSource.model_fields)
    if "slices" in loc and len(loc) > 2:
        return list(Slice.model_fields)
    return list(Recipe.model_fields)


def _one_line(err: Exception) -> str:
    """A YAML error (which spans lines, with a caret drawing) as one line."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()
                    and not set(line.strip()) <= {"^"})


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A user's YAML file as a mapping, or a one-line error naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RecipeError(f"Cannot read {what} {path}: {err.strerror}.",
                          fix="check the path.") from err
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path} is not UTF-8 text (byte {err.start}).",
                          fix=f"save the {what} as UTF-8 YAML.") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {_one_line(err)}.",
                          fix="fix the YAML syntax.") from err
    if not isinstance(data, dict):
        raise RecipeError(f"{path} does not hold a mapping of keys to values.",
                          fix=f"see the {what} example in `merge3 --help`.")
    return data


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file; model paths are resolved against its folder."""
    data = read_yaml_mapping(path, "recipe")
    return parse_recipe(data, source=str(path)).resolve_paths(Path(path).parent)


def parse_recipe(data: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise _format_validation_error(err, source) from None


class Fallback(tuple):
    """Settings tried in order for each tensor (model's, then global, then the default):
    a filter list that matches nothing for a tensor falls through to the next, as in
    mergekit."""


def resolve_parameter(setting: Any, tensor_name: str, t: float) -> Any:
    """The value of one parameter for one tensor at layer position t ∈ [0, 1]."""
    if isinstance(setting, Fallback):
        for option in setting:
            value = resolve_parameter(option, tensor_name, t)
            if value is not None:
                return value
        return None
    if isinstance(setting, Conditional):
        setting = [setting]
    if isinstance(setting, list):
        if not setting:
            return None
        if all(isinstance(c, Conditional) for c in setting):
            for cond in setting:
                if cond.filter in (None, "*") or cond.filter in tensor_name:
                    return resolve_parameter(cond.value, tensor_name, t)
            return None
        values = [float(v) for v in setting]
        position = t * (len(values) - 1)
        low = int(position)
        high = min(len(values) - 1, low + 1)
        frac = position - low
        return (1 - frac) * values[low] + frac * values[high]
    return setting
