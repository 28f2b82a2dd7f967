"""lm-evaluation-harness task YAMLs: the keys merge3 reads, validated; the rest refused.

A task YAML of lm-eval 0.4.13 (``output_type: multiple_choice`` or ``generate_until``) is
read as it is: ``include`` resolved as lm-eval's ``tasks/_yaml_loader.load_yaml`` does
(included files in order, local keys win), every key checked against the subset merge3
implements identically (docs/evaluators.md "lm-eval task YAMLs"). A key merge3 does not
implement -- Python hooks (``!function``, ``process_docs``), chat/multimodal options,
sampling -- is refused by name instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evaluators.errors import TaskSpecError
from evaluators.items import AnswerFilter, ExactMatchRule, FilterStep
from evaluators.spec import FunctionTag, read_task_yaml
from merge3.registry import did_you_mean

__all__ = ["LmEvalTaskSpec", "read_lm_eval_spec", "DEFAULT_MAX_GEN_TOKS", "FEWSHOT_SEED"]

DEFAULT_MAX_GEN_TOKS = 256  # lm_eval.defaults.DEFAULT_MAX_GEN_TOKS
FEWSHOT_SEED = 1234  # lm_eval.defaults.DEFAULT_OTHER_SEED: the few-shot sampler's seed

# Keys lm-eval has that merge3 does not implement, with why (the error says it).
_REFUSED = {
    "process_docs": "a Python hook; apply it to the data files beforehand",
    "process_results": "a Python hook",
    "custom_dataset": "a Python hook",
    "use_prompt": "promptsource prompts are not supported",
    "doc_to_image": "multimodal tasks are not supported",
    "doc_to_audio": "multimodal tasks are not supported",
    "gen_prefix": "assistant prefixes (chat templates) are not supported",
    "unsafe_code": "code-execution tasks are not supported",
    "group": "task groups are not supported: pass each task YAML",
    "task_list": "task lists are not supported: pass each task YAML",
}
_DATASET_KWARGS = ("data_files", "data_dir", "revision", "trust_remote_code")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Strict):
    """One ``metric_list`` entry: the metrics merge3 computes as lm-eval does."""

    metric: Literal["acc", "acc_norm", "acc_bytes", "exact_match"]
    aggregation: Literal["mean"] = "mean"
    higher_is_better: Literal[True] = True
    # exact_match options (lm_eval.api.metrics.exact_match_hf_evaluate)
    ignore_case: bool = False
    ignore_punctuation: bool = False
    ignore_numbers: bool = False
    regexes_to_ignore: list[str] | None = None


class GenerationKwargs(_Strict):
    """``generation_kwargs``: greedy decoding only (merge3 scores deterministically)."""

    until: str | list[str] | None = None
    max_gen_toks: int | None = Field(default=None, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    do_sample: bool | None = None
    temperature: float | None = None

    @model_validator(mode="after")
    def _greedy(self) -> GenerationKwargs:
        sampling = self.do_sample or (self.do_sample is None and (self.temperature or 0) > 0)
        if sampling:
            raise ValueError("sampling is not supported: merge3 decodes greedily (set "
                             "do_sample: false, or temperature: 0)")
        return self

    def budget(self) -> int:
        """lm-eval's ``normalize_gen_kwargs``: the first given of max_gen_toks,
        max_new_tokens, max_tokens, max_completion_tokens (default 256)."""
        for value in (self.max_gen_toks, self.max_new_tokens, self.max_tokens,
                      self.max_completion_tokens):
            if value is not None:
                return value
        return DEFAULT_MAX_GEN_TOKS


class FilterStepSpec(_Strict):
    function: Literal["regex", "take_first", "remove_whitespace", "lowercase", "uppercase"]
    regex_pattern: str | None = None
    group_select: int | None = None
    fallback: str | None = None


class FilterSpec(_Strict):
    """One ``filter_list`` entry: a named pipeline that ends with ``take_first``."""

    name: str
    filter: list[FilterStepSpec] = Field(min_length=1)

    @field_validator("filter")
    @classmethod
    def _take_first_last(cls, steps: list[FilterStepSpec]) -> list[FilterStepSpec]:
        kinds = [s.function for s in steps]
        if kinds[-1] != "take_first" or "take_first" in kinds[:-1]:
            raise ValueError("a filter pipeline must end with (and have one) take_first")
        for step in steps:
            given = {"regex_pattern", "group_select", "fallback"} & step.model_fields_set
            if step.function != "regex" and given:
                raise ValueError(f"{step.function} takes no {', '.join(sorted(given))}")
        return steps


class FewshotSpec(_Strict):
    """``fewshot_config``: where few-shot examples come from and how they are drawn."""

    sampler: Literal["default", "first_n"] = "default"
    split: str | None = None
    samples: list[dict[str, Any]] | None = None
    fewshot_indices: list[int] | None = None
    doc_to_text: str | None = None
    doc_to_target: str | int | None = None
    doc_to_choice: str | list[str] | dict[str, str] | None = None
    target_delimiter: str | None = None
    fewshot_delimiter: str | None = None


class LmEvalTaskSpec(_Strict):
    """The keys of an lm-eval 0.4.13 task YAML that merge3 reads (defaults as lm-eval's
    ``TaskConfig``)."""

    task: str = Field(min_length=1)
    task_alias: str | None = None  # display names and tags: read, not needed
    tag: str | list[str] | None = None
    metadata: dict[str, Any] | None = None
    dataset_path: str
    dataset_name: str | None = None
    dataset_kwargs: dict[str, Any] | None = None
    training_split: str | None = None
    validation_split: str | None = None
    test_split: str | None = None
    fewshot_split: str | None = None
    doc_to_text: str | None = None
    doc_to_target: str | int | None = None
    doc_to_choice: str | list[str] | dict[str, str] | None = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot_config: FewshotSpec | None = None
    num_fewshot: int | None = Field(default=None, ge=0)
    metric_list: list[MetricSpec] | None = None
    output_type: Literal["multiple_choice", "generate_until"] = "generate_until"
    generation_kwargs: GenerationKwargs | None = None
    repeats: Literal[1] = 1
    filter_list: list[FilterSpec] | None = None
    should_decontaminate: bool = False  # decontamination is an lm-eval analysis: unused
    doc_to_decontamination_query: str | None = None

    @property
    def format(self) -> str:
        return "multiple_choice" if self.output_type == "multiple_choice" else "generative"

    @property
    def metrics(self) -> list[MetricSpec]:
        """The metric list, or lm-eval's default for the output type."""
        if self.metric_list:
            return list(self.metric_list)
        names = ("acc", "acc_norm") if self.output_type == "multiple_choice" else (
            "exact_match",)
        return [MetricSpec(metric=n) for n in names]

    @property
    def main_metric(self) -> str:
        """The item's score: the first metric of lm-eval's own sample records, whose
        ``metrics`` follow ``process_results``' order (acc, acc_norm, acc_bytes,
        exact_match) whatever the order of ``metric_list`` -- the metric ``merge3 irt``
        reads from lm-eval logs, so both logs of a model give the same cells."""
        listed = {m.metric for m in self.metrics}
        return next(m for m in ("acc", "acc_norm", "acc_bytes", "exact_match") if m in listed)

    @property
    def eval_split(self) -> str | None:
        """lm-eval's ``eval_docs``: the test split, else the validation split."""
        return self.test_split or self.validation_split

    @property
    def fewshot(self) -> FewshotSpec:
        """The few-shot configuration with the task's own fields filled in."""
        own = self.fewshot_config or FewshotSpec()
        given = own.model_fields_set
        inherited = {"split": self.fewshot_split, "doc_to_text": self.doc_to_text,
                     "doc_to_target": self.doc_to_target, "doc_to_choice": self.doc_to_choice,
                     "target_delimiter": self.target_delimiter,
                     "fewshot_delimiter": self.fewshot_delimiter}
        return own.model_copy(update={k: v for k, v in inherited.items() if k not in given})

    def stop_sequences(self) -> tuple[str, ...]:
        """``until``: as given (a string is one stop), else the few-shot delimiter."""
        kwargs = self.generation_kwargs
        until = kwargs.until if kwargs is not None else None
        if until is None:
            return (self.fewshot_delimiter,)
        return (until,) if isinstance(until, str) else tuple(until)

    def max_gen_toks(self) -> int:
        kwargs = self.generation_kwargs
        return kwargs.budget() if kwargs is not None else DEFAULT_MAX_GEN_TOKS

    def answer_filters(self) -> tuple[AnswerFilter, ...]:
        out = []
        for entry in self.filter_list or []:
            steps = []
            for step in entry.filter:
                args = {k: getattr(step, k) for k in ("regex_pattern", "group_select",
                                                      "fallback") if getattr(step, k) is not None}
                steps.append(FilterStep(step.function, tuple(sorted(args.items()))))
            out.append(AnswerFilter(entry.name, tuple(steps)))
        return tuple(out)

    def exact_match_rule(self) -> ExactMatchRule:
        spec = next((m for m in self.metrics if m.metric == "exact_match"), MetricSpec(
            metric="exact_match"))
        return ExactMatchRule(tuple(spec.regexes_to_ignore or ()), spec.ignore_case,
                              spec.ignore_punctuation, spec.ignore_numbers)


def _resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """lm-eval's ``load_yaml``: included files first, in order, then the file's own keys."""
    path = path.expanduser().resolve()
    if path in seen:
        raise TaskSpecError(
            f"Task file {str(path)!r} includes itself (through {' -> '.join(map(str, seen))}).",
            fix="remove the include cycle.",
        )
    raw = read_task_yaml(path)
    includes = raw.pop("include", None)
    if includes is None:
        return raw
    merged: dict[str, Any] = {}
    for name in includes if isinstance(includes, list) else [includes]:
        target = Path(name) if Path(name).is_absolute() else path.parent / name
        if not target.is_file():
            raise TaskSpecError(
                f"Task file {str(path)!r}: include {name!r} does not exist ({str(target)!r}).",
                fix="include paths are relative to the including YAML.",
            )
        included = _resolve_includes(target, (*seen, path))
        included.pop("task_list", None)
        merged.update(included)
    merged.update(raw)
    return merged


def _function_keys(value: Any, where: str) -> list[str]:
    if isinstance(value, FunctionTag):
        return [where]
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in _function_keys(v, f"{where}.{key}")]
    if isinstance(value, list):
        return [k for i, v in enumerate(value) for k in _function_keys(v, f"{where}[{i}]")]
    return []


def _check_supported(raw: dict[str, Any], path: Path) -> None:
    functions = [k for key, v in raw.items() for k in _function_keys(v, key)]
    if functions:
        raise TaskSpecError(
            f"Task file {str(path)!r}: {', '.join(functions)} is a Python function "
            f"(!function {raw_value(raw, functions[0])}); merge3 runs no code from task files.",
            fix="write the field as a column name or a Jinja template, or preprocess the "
            "data files (lm-eval YAML support: docs/evaluators.md).",
        )
    for key, why in _REFUSED.items():
        if key in raw and raw[key] not in (None, False):
            raise TaskSpecError(
                f"Task file {str(path)!r}: lm-eval key '{key}' is not supported ({why}).",
                fix="remove it, or run this task with lm-eval itself (supported keys: "
                "docs/evaluators.md).",
            )
    output_type = raw.get("output_type", "generate_until")
    if output_type not in ("multiple_choice", "generate_until"):
        raise TaskSpecError(
            f"Task file {str(path)!r}: output_type {output_type!r} is not supported.",
            fix="merge3 reads lm-eval tasks with output_type multiple_choice or "
            "generate_until.",
        )
    kwargs = raw.get("dataset_kwargs") or {}
    unknown = [k for k in kwargs if k not in _DATASET_KWARGS] if isinstance(kwargs, dict) else []
    if unknown:
        raise TaskSpecError(
            f"Task file {str(path)!r}: dataset_kwargs key '{unknown[0]}' is not supported."
            f"{did_you_mean(unknown[0], _DATASET_KWARGS)}",
            fix=f"use {', '.join(_DATASET_KWARGS)}.",
        )


def raw_value(raw: dict[str, Any], where: str) -> str:
    """The text of the value at a dotted key (for error messages)."""
    value: Any = raw
    for part in where.replace("[", ".").replace("]", "").split("."):
        value = value[int(part)] if isinstance(value, list) else value.get(part)
    return str(value)


def read_lm_eval_spec(path: str | Path) -> LmEvalTaskSpec:
    """Read an lm-eval task YAML (includes resolved) and validate the keys merge3 reads."""
    path = Path(path)
    raw = _resolve_includes(path)
    _check_supported(raw, path)
    try:
        return LmEvalTaskSpec.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if e["type"] == "missing":
                problems.append(f"missing key '{where}'")
            elif e["type"] == "extra_forbidden":
                name = str(e["loc"][-1])
                known = _known_keys(e["loc"][:-1])
                hint = did_you_mean(name, known).strip()
                problems.append(f"lm-eval key '{where}' is not supported"
                                + (f" ({hint})" if hint else ""))
            else:
                problems.append(f"'{where}': {e['msg']}")
        raise TaskSpecError(
            f"Task file {str(path)!r} (an lm-eval task YAML) is invalid: "
            f"{'; '.join(problems)}.",
            fix="see docs/evaluators.md for the lm-eval keys merge3 supports.",
        ) from None


def _known_keys(loc: tuple) -> list[str]:
    models = {"metric_list": MetricSpec, "generation_kwargs": GenerationKwargs,
              "filter_list": FilterSpec, "fewshot_config": FewshotSpec, "filter": FilterStepSpec}
    names = [str(p) for p in loc if isinstance(p, str)]
    model = models.get(names[-1], LmEvalTaskSpec) if names else LmEvalTaskSpec
    return list(model.model_fields)
