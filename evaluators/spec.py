"""The task YAML schema (pydantic, unknown keys rejected); docs/evaluators.md documents it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluators.errors import TaskSpecError

__all__ = [
    "DatasetSpec",
    "TaskSpec",
    "FunctionTag",
    "LM_EVAL_KEYS",
    "is_lm_eval_yaml",
    "read_task_yaml",
    "read_task_spec",
    "validate_task_spec",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where a task's items come from: exactly one of ``path``, ``data_files``, ``name``."""

    path: str | None = None  # a save_to_disk directory, relative to the YAML
    # JSONL / parquet / arrow files relative to the YAML: the evaluated split's files, or
    # a mapping split -> files (e.g. {test: test.jsonl, train: train.jsonl} for few-shot)
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    name: str | None = None  # a hub dataset name (needs a network)
    config: str | None = None  # the hub dataset's configuration (subset)
    split: str = "test"

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        given = [k for k in ("path", "data_files", "name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "dataset needs exactly one of 'path', 'data_files' or 'name'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


_REQUIRED: dict[str, tuple[str, ...]] = {
    "classification": ("input_field", "label_field"),
    "multiple_choice": ("prompt", "label_field"),
    "generative": ("prompt", "target_field"),
}
_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("acc",),
    "multiple_choice": ("acc", "acc_norm", "acc_bytes"),
    "generative": ("exact_match",),
}


class TaskSpec(_Strict):
    """One task: a dataset, how to render an item, how to score it."""

    task: str = Field(min_length=1)
    format: Literal["classification", "multiple_choice", "generative"]
    dataset: DatasetSpec
    id_field: str | None = None  # None: ids are "<task>-<row index>"
    metric: str | None = None  # default: acc (classification, MC) / exact_match (generative)
    # classification
    input_field: str | None = None
    head: str | None = None  # head file name under heads/ (default: the task name)
    # multiple_choice and generative
    prompt: str | None = None  # Python format template or Jinja over the row's fields
    prompt_format: Literal["auto", "python", "jinja"] = "auto"  # auto: Jinja if {{ x }} / {%
    description: str = ""  # prepended once, before the few-shot examples
    label_field: str | None = None  # class index / gold choice (index or its text)
    choices_field: str | None = None  # MC: a list of choice strings in each row ...
    choices: list[str] | None = None  # ... or the same choices for every row
    target_field: str | None = None  # generative: the reference answer
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = Field(default=0, ge=0)
    fewshot_split: str | None = None  # default: the evaluated split, minus the item itself
    fewshot_examples: list[dict[str, Any]] | None = None  # inline rows instead of a split
    # generative
    max_new_tokens: int = Field(default=32, ge=1)
    stop: list[str] = Field(default_factory=list)
    answer_regex: str | None = None
    ignore_case: bool = False

    @model_validator(mode="after")
    def _fields_of_format(self) -> TaskSpec:
        missing = [k for k in _REQUIRED[self.format] if getattr(self, k) is None]
        if self.format == "multiple_choice" and self.choices is None and not self.choices_field:
            missing.append("choices_field (or choices)")
        if missing:
            raise ValueError(f"format {self.format!r} needs: {', '.join(missing)}")
        metric = self.metric or _METRICS[self.format][0]
        if metric not in _METRICS[self.format]:
            raise ValueError(
                f"metric {metric!r} is not available for format {self.format!r}; "
                f"use one of {', '.join(_METRICS[self.format])}"
            )
        return self

    @property
    def main_metric(self) -> str:
        return self.metric or _METRICS[self.format][0]


class FunctionTag(str):
    """The Python reference of an lm-eval ``!function module.name`` YAML tag (kept as text:
    merge3 runs no code from a task file, and names the key instead)."""


class _TaskLoader(yaml.SafeLoader):
    """YAML's safe loader, plus lm-eval's ``!function`` tag read as a FunctionTag."""


_TaskLoader.add_constructor(
    "!function", lambda loader, node: FunctionTag(loader.construct_scalar(node)))


def read_task_yaml(path: str | Path) -> dict:
    """The mapping of a task YAML (merge3's or lm-eval's); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise TaskSpecError(
            f"Task file {str(path)!r} does not exist.",
            fix="pass a task YAML path or a directory of task YAMLs.",
        )
    try:
        raw = yaml.load(path.read_text(), Loader=_TaskLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise TaskSpecError(f"Task file {str(path)!r} is not valid YAML: {err}.") from err
    if not isinstance(raw, dict):
        raise TaskSpecError(
            f"Task file {str(path)!r} must be a YAML mapping, not {type(raw).__name__}.",
            fix="see docs/evaluators.md for the task format.",
        )
    return raw


def is_lm_eval_yaml(raw: dict) -> bool:
    """An lm-evaluation-harness task YAML: lm-eval keys and no merge3 ``format``."""
    return "format" not in raw and bool(LM_EVAL_KEYS & set(raw))


def read_task_spec(path: str | Path) -> TaskSpec:
    """Read and validate a merge3 task YAML; errors name the file and the key at fault."""
    return validate_task_spec(read_task_yaml(path), Path(path))


# Keys only an lm-evaluation-harness task YAML has (evaluators.lm_eval_spec reads those).
LM_EVAL_KEYS = frozenset({
    "output_type", "dataset_path", "dataset_name", "dataset_kwargs", "doc_to_text",
    "doc_to_target", "doc_to_choice", "test_split", "validation_split", "training_split",
    "metric_list", "generation_kwargs", "filter_list", "include", "fewshot_config",
})


def validate_task_spec(raw: dict, path: Path) -> TaskSpec:
    """Validate a merge3 task mapping read from ``path``."""
    try:
        return TaskSpec.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if e["type"] == "missing":
                problems.append(f"missing field '{where}'")
            elif e["type"] == "extra_forbidden":
                problems.append(f"unknown key '{where}'")
            else:
                problems.append(f"'{where}': {e['msg']}")
        lm_eval = sorted(LM_EVAL_KEYS & set(raw))
        fix = ("it mixes merge3's 'format' with lm-eval keys "
               f"({', '.join(lm_eval)}): drop 'format' to read it as an lm-eval task YAML"
               if lm_eval else "see docs/evaluators.md for the fields of each task format")
        raise TaskSpecError(
            f"Task file {str(path)!r} is invalid: {'; '.join(problems)}.", fix=fix + ".",
        ) from None
