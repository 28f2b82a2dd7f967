"""lm-eval task YAMLs -> items, rendered exactly as lm-evaluation-harness 0.4.13 does.

Restated from lm-eval's ``ConfigurableTask`` (``doc_to_text`` / ``doc_to_target`` /
``doc_to_choice``, ``fewshot_context`` + ``build_qa_turn``, ``construct_requests``),
``api/samplers.py`` (the default sampler draws with ``random.Random(1234)`` per document,
in document order; ``first_n``) and ``ConfigurableTask.download`` (``datasets.load_dataset
(dataset_path, dataset_name, **dataset_kwargs)``). Item ids are lm-eval's ``doc_id`` (the
row's index in the evaluated split), so merge3 and lm-eval logs name the same items.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from random import Random
from typing import Any

from evaluators.errors import TaskSpecError
from evaluators.items import GenerationSpec, Item
from evaluators.lm_eval_spec import FEWSHOT_SEED, FewshotSpec, LmEvalTaskSpec, read_lm_eval_spec
from evaluators.tasks import Task
from evaluators.templates import render_jinja

__all__ = ["load_lm_eval_task", "FewshotSampler"]

# datasets' packaged builders: dataset_path names a file format, data_files the files
_PACKAGED = ("json", "csv", "parquet", "arrow", "text", "pandas")


class FewshotSampler:
    """lm-eval's ``ContextSampler`` (``default``: random draws) and ``FirstNSampler``."""

    def __init__(self, pool: Sequence[dict], kind: str, seed: int = FEWSHOT_SEED) -> None:
        self.pool = list(pool)
        self.kind = kind
        self.rnd = Random(seed)

    def sample(self, n: int, eval_doc: dict | None) -> list[dict]:
        if n == 0:
            return []
        if self.kind == "first_n":
            pool = [x for x in self.pool if x != eval_doc] if eval_doc is not None else self.pool
            if n > len(pool):
                raise ValueError(f"{n} few-shot examples asked for, {len(pool)} available")
            return pool[:n]
        if not eval_doc:
            return self.rnd.sample(self.pool, n)
        drawn = [x for x in self.rnd.sample(self.pool, n + 1) if x != eval_doc][:n]
        if len(drawn) < n:  # duplicates of the eval doc were drawn: lm-eval draws again
            drawn = self.rnd.sample([x for x in self.pool if x != eval_doc], n)
        return drawn


class _Renderer:
    """doc_to_text / doc_to_target / doc_to_choice of one task, as lm-eval evaluates them."""

    def __init__(self, spec: LmEvalTaskSpec, features: Sequence[str], path: Path) -> None:
        self.spec, self.features, self.path = spec, list(features), path

    def _render(self, template: str, doc: Mapping[str, Any], field: str, doc_id: str) -> str:
        return render_jinja(template, doc, task=self.spec.task, item_id=doc_id, field=field)

    def _refuse(self, message: str, field: str) -> TaskSpecError:
        return TaskSpecError(f"Task file {str(self.path)!r}: {field} {message}.",
                             fix="see docs/evaluators.md for the lm-eval YAML support.")

    def text(self, doc: Mapping[str, Any], template: str | int | None, doc_id: str) -> str:
        if template is None:
            raise self._refuse("is missing (lm-eval needs it to build the prompt)",
                               "doc_to_text")
        if isinstance(template, int):
            value: Any = template
        elif template in self.features:
            value = doc[template]
        else:
            value = self._render(template, doc, "doc_to_text", doc_id)
            if value.isdigit() and self.spec.doc_to_choice is not None:
                value = int(value)
        if not isinstance(value, str):
            raise self._refuse(f"gives {value!r} for item {doc_id!r}, not a string (an index "
                               "means one context per choice, which merge3 does not support)",
                               "doc_to_text")
        return value

    def target(self, doc: Mapping[str, Any], template: str | int | None, doc_id: str) -> Any:
        if template is None:
            raise self._refuse("is missing", "doc_to_target")
        if isinstance(template, int):
            return template
        if template in self.features:
            return doc[template]
        value = self._render(template, doc, "doc_to_target", doc_id)
        if value.isdigit() and self.spec.doc_to_choice is not None:
            return ast.literal_eval(value)
        if len(value) >= 2 and value[0] == "[" and value[-1] == "]":
            try:
                return ast.literal_eval(value)
            except (SyntaxError, ValueError):
                return value
        return value

    def choices(self, doc: Mapping[str, Any], template: Any, doc_id: str) -> list[str]:
        if isinstance(template, dict):
            choices: Any = list(template.values())
        elif isinstance(template, list):
            choices = template
        elif template in self.features:
            choices = doc[template]
        else:
            rendered = self._render(str(template), doc, "doc_to_choice", doc_id)
            try:
                choices = ast.literal_eval(rendered)
            except (SyntaxError, ValueError):
                raise self._refuse(f"renders to {rendered!r} for item {doc_id!r}, not a "
                                   "Python list literal", "doc_to_choice") from None
        if not isinstance(choices, list | tuple) or not all(isinstance(c, str) for c in choices):
            raise self._refuse(f"gives {choices!r} for item {doc_id!r}, not a list of "
                               "strings", "doc_to_choice")
        return list(choices)

    def description(self, doc: Mapping[str, Any], doc_id: str) -> str:
        """lm-eval's ``resolve_field``: a column's value, else a rendered template."""
        field = self.spec.description
        if not field:
            return ""
        return str(doc[field]) if field in doc else self._render(field, doc, "description",
                                                                  doc_id)

    def context(self, doc: Mapping[str, Any], shots: Sequence[dict], doc_id: str) -> str:
        """``fewshot_context`` as plain text: description, then per shot the question, the
        target delimiter, the answer and the few-shot delimiter, then the question."""
        fewshot: FewshotSpec = self.spec.fewshot
        parts = [self.description(doc, doc_id)]
        for shot in shots:
            question = self.text(shot, fewshot.doc_to_text, "few-shot")
            choices = (self.choices(shot, fewshot.doc_to_choice, "few-shot")
                       if fewshot.doc_to_choice else None)
            answer = self.target(shot, fewshot.doc_to_target, "few-shot")
            if answer is None or answer == "":
                parts.append(question)  # build_qa_turn: no answer, no delimiters
                continue
            if choices and isinstance(answer, int):
                answer = choices[answer]
            elif isinstance(answer, list):
                answer = answer[0]
            parts += [question, fewshot.target_delimiter or "", str(answer),
                      fewshot.fewshot_delimiter or ""]
        parts.append(self.text(doc, self.spec.doc_to_text, doc_id))
        return "".join(parts)


def _resolve_file(name: str, yaml_path: Path, what: str) -> str:
    """A relative data path as lm-eval reads it (from the working directory), else from
    the YAML's folder; globs are left to ``datasets``."""
    path = Path(name)
    if path.is_absolute() or any(c in name for c in "*?["):
        return name
    for base in (Path.cwd(), yaml_path.parent):
        if (base / path).exists():
            return str((base / path).resolve())
    raise TaskSpecError(
        f"Task file {str(yaml_path)!r}: {what} {name!r} exists neither in the working "
        f"directory ({str(Path.cwd())!r}) nor beside the YAML.",
        fix="give the path relative to the directory lm-eval runs from, or to the YAML.",
    )


def _resolve_data_files(files: Any, yaml_path: Path) -> Any:
    if isinstance(files, str):
        return _resolve_file(files, yaml_path, "data file")
    if isinstance(files, list):
        return [_resolve_data_files(f, yaml_path) for f in files]
    if isinstance(files, dict):
        return {split: _resolve_data_files(f, yaml_path) for split, f in files.items()}
    raise TaskSpecError(f"Task file {str(yaml_path)!r}: dataset_kwargs.data_files must be a "
                        "path, a list of paths or a mapping split -> path(s).")


def _load_dataset(spec: LmEvalTaskSpec, yaml_path: Path):
    """``datasets.load_dataset(dataset_path, dataset_name, **dataset_kwargs)`` with local
    paths resolved; a hub dataset that cannot be reached gets a clear error."""
    import datasets

    kwargs = dict(spec.dataset_kwargs or {})
    kwargs.pop("trust_remote_code", None)  # lm-eval drops it for datasets >= 4
    if "data_files" in kwargs:
        kwargs["data_files"] = _resolve_data_files(kwargs["data_files"], yaml_path)
    if "data_dir" in kwargs:
        kwargs["data_dir"] = _resolve_file(str(kwargs["data_dir"]), yaml_path, "data_dir")
    source = spec.dataset_path
    local = next((base / source for base in (Path.cwd(), yaml_path.parent)
                  if source not in _PACKAGED and (base / source).exists()), None)
    if local is not None:
        source = str(local.resolve())
    try:
        loaded = datasets.load_dataset(source, spec.dataset_name, **kwargs)
    except Exception as err:  # datasets raises many types (ConnectionError, ValueError...)
        hub = local is None and source not in _PACKAGED
        raise TaskSpecError(
            f"Task file {str(yaml_path)!r}: cannot load dataset_path {spec.dataset_path!r}"
            + (" (a hub dataset: is this machine offline?)" if hub else "")
            + f": {' '.join(str(err).split())[:300]}.",
            fix=("download it where there is a network and point dataset_path at the local "
                 "copy, or use dataset_path: json with dataset_kwargs: {data_files: "
                 "{test: FILE.jsonl}}" if hub else
                 "check dataset_path, dataset_name and dataset_kwargs.data_files"),
        ) from None
    return loaded


def _split(loaded, name: str, yaml_path: Path, key: str):
    if name not in loaded:
        raise TaskSpecError(
            f"Task file {str(yaml_path)!r}: {key} {name!r} is not a split of the dataset "
            f"(it has {', '.join(map(repr, loaded))}).",
            fix="name one of the dataset's splits (data_files: {SPLIT: FILE} names them).",
        )
    return loaded[name]


def _fewshot_pool(spec: LmEvalTaskSpec, loaded, yaml_path: Path, eval_rows: list[dict]):
    """lm-eval's ``fewshot_docs``: the few-shot split, else inline samples, else the
    training, validation or test split, in that order of preference."""
    fewshot = spec.fewshot
    if fewshot.split is not None:
        pool = [dict(r) for r in _split(loaded, fewshot.split, yaml_path, "fewshot_split")]
    elif spec.fewshot_config is not None and fewshot.samples is not None:
        pool = [dict(r) for r in fewshot.samples]
    else:
        fallback = spec.training_split or spec.validation_split
        pool = ([dict(r) for r in _split(loaded, fallback, yaml_path, "split")] if fallback
                else eval_rows)
    if fewshot.fewshot_indices:
        pool = [pool[i] for i in fewshot.fewshot_indices]
    return pool


def _gold_index(target: Any, choices: list[str], yaml_path: Path, doc_id: str) -> int:
    if isinstance(target, list):
        raise TaskSpecError(f"Task file {str(yaml_path)!r}: doc_to_target gives a list for "
                            f"item {doc_id!r} (several gold answers), which merge3 does not "
                            "support.", fix="give one gold answer per row.")
    index = choices.index(target) if isinstance(target, str) and target in choices else target
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(choices):
        raise TaskSpecError(
            f"Task file {str(yaml_path)!r}: item {doc_id!r}: gold {target!r} is neither a "
            f"choice nor an index of the {len(choices)} choices {choices}.",
            fix="doc_to_target must give the correct choice's index or its text.",
        )
    return index


def _build_item(spec: LmEvalTaskSpec, renderer: _Renderer, doc: dict, doc_id: str,
                context: str, generation: GenerationSpec | None, yaml_path: Path) -> Item:
    target = renderer.target(doc, spec.doc_to_target, doc_id)
    if spec.output_type == "multiple_choice":
        choices = renderer.choices(doc, spec.doc_to_choice, doc_id)
        return Item(task=spec.task, id=doc_id, format="multiple_choice", prompt=context,
                    target=_gold_index(target, choices, yaml_path, doc_id),
                    choices=tuple(f"{spec.target_delimiter}{c}" for c in choices),
                    choice_texts=tuple(choices), metric=spec.main_metric)
    if spec.doc_to_choice is not None:
        target = renderer.choices(doc, spec.doc_to_choice, doc_id)[target]
    elif isinstance(target, list):
        raise TaskSpecError(f"Task file {str(yaml_path)!r}: doc_to_target gives a list for "
                            f"item {doc_id!r} (several gold answers), which merge3 does not "
                            "support.", fix="give one gold answer per row.")
    return Item(task=spec.task, id=doc_id, format="generative", prompt=context,
                target=str(target), generation=generation, metric=spec.main_metric)


def _check_metrics(spec: LmEvalTaskSpec, yaml_path: Path) -> None:
    allowed = ("acc", "acc_norm", "acc_bytes") if spec.output_type == "multiple_choice" else (
        "exact_match",)
    for metric in spec.metrics:
        if metric.metric not in allowed:
            raise TaskSpecError(
                f"Task file {str(yaml_path)!r}: metric {metric.metric!r} is not available for "
                f"output_type {spec.output_type}.", fix=f"use {', '.join(allowed)}.")


def load_lm_eval_task(path: str | Path, raw: dict | None = None,
                      limit: int | None = None) -> Task:
    """Load an lm-eval task YAML and render its items (the first ``limit`` if given),
    with few-shot examples drawn as lm-eval draws them."""
    path = Path(path)
    spec = read_lm_eval_spec(path)
    _check_metrics(spec, path)
    if spec.eval_split is None:
        raise TaskSpecError(f"Task file {str(path)!r}: lm-eval evaluates the test_split, else "
                            "the validation_split; neither is given.",
                            fix="add test_split: NAME (a split of the dataset).")
    loaded = _load_dataset(spec, path)
    eval_split = _split(loaded, spec.eval_split, path,
                        "test_split" if spec.test_split else "validation_split")
    rows = [dict(r) for r in eval_split]
    renderer = _Renderer(spec, eval_split.column_names, path)
    shots = spec.num_fewshot or 0
    sampler = FewshotSampler(_fewshot_pool(spec, loaded, path, rows) if shots else [],
                             spec.fewshot.sampler)
    exclude_eval_doc = spec.fewshot.split == spec.test_split
    generation = None
    if spec.output_type == "generate_until":
        generation = GenerationSpec(max_new_tokens=spec.max_gen_toks(),
                                    stop=spec.stop_sequences(), scoring="lm_eval",
                                    filters=spec.answer_filters(),
                                    match=spec.exact_match_rule())
    items = []
    for index, doc in enumerate(rows[:limit] if limit is not None else rows):
        doc_id = str(index)
        try:
            drawn = sampler.sample(shots, doc if exclude_eval_doc else None)
        except ValueError as err:
            raise TaskSpecError(f"Task file {str(path)!r}: num_fewshot {shots}: {err} (the "
                                f"few-shot pool has {len(sampler.pool)} documents).",
                                fix="lower num_fewshot or give a larger fewshot_split.") from None
        context = renderer.context(doc, drawn, doc_id)
        items.append(_build_item(spec, renderer, doc, doc_id, context, generation, path))
    return Task(spec=spec, source=path, items=tuple(items))
