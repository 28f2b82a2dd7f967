"""Tasks: a YAML spec + a ``datasets`` dataset, rendered into items with stable string ids."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.errors import ItemNotFoundError, TaskSpecError
from evaluators.items import GenerationSpec, Item
from evaluators.spec import (
    DatasetSpec,
    TaskSpec,
    is_lm_eval_yaml,
    read_task_yaml,
    validate_task_spec,
)
from evaluators.templates import render_prompt
from merge3.registry import did_you_mean

if TYPE_CHECKING:
    from evaluators.lm_eval_spec import LmEvalTaskSpec

__all__ = ["Task", "load_task", "load_tasks", "task_paths", "select_items", "read_item_ids"]


@dataclass(frozen=True, slots=True)
class Task:
    """A loaded task: its spec (merge3's TaskSpec or an LmEvalTaskSpec), where it came
    from, and its rendered items in dataset order."""

    spec: TaskSpec | LmEvalTaskSpec
    source: Path
    items: tuple[Item, ...]

    @property
    def name(self) -> str:
        return self.spec.task


_EXTENSION_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
}


def _load_rows(dataset: DatasetSpec, base: Path, split: str, yaml_path: Path):
    """Load one split as a ``datasets.Dataset`` (local files, a saved dataset, or the hub)."""
    import datasets

    try:
        if dataset.path is not None:
            loaded = datasets.load_from_disk(str(base / dataset.path))
            if isinstance(loaded, datasets.DatasetDict):
                return loaded[split]
            return loaded
        if dataset.data_files is not None:
            by_split = (
                dataset.data_files
                if isinstance(dataset.data_files, dict)
                else {dataset.split: dataset.data_files}
            )
            if split not in by_split:
                raise TaskSpecError(
                    f"Task file {str(yaml_path)!r}: data_files has no split {split!r} "
                    f"(it gives {', '.join(map(repr, by_split))}).",
                    fix=f"map splits to files: data_files: {{{dataset.split}: FILE, "
                    f"{split}: FILE}}.",
                )
            files = by_split[split] if isinstance(by_split[split], list) else [by_split[split]]
            resolved = [str(base / f) for f in files]
            for f in resolved:
                if not Path(f).exists():
                    raise TaskSpecError(
                        f"Task file {str(yaml_path)!r}: data file {f!r} does not exist.",
                        fix="data_files paths are relative to the task YAML.",
                    )
            suffix = Path(resolved[0]).suffix
            builder = _EXTENSION_BUILDERS.get(suffix)
            if builder is None:
                raise TaskSpecError(
                    f"Task file {str(yaml_path)!r}: cannot read {resolved[0]!r} ({suffix}).",
                    fix=f"use one of {', '.join(_EXTENSION_BUILDERS)}.",
                )
            return datasets.load_dataset(builder, data_files={split: resolved}, split=split)
        return datasets.load_dataset(dataset.name, dataset.config, split=split)
    except TaskSpecError:
        raise
    except (KeyError, ValueError, FileNotFoundError, OSError) as err:
        raise TaskSpecError(
            f"Task file {str(yaml_path)!r}: cannot load split {split!r} of its dataset: {err}.",
            fix="check dataset.path / data_files / name and split.",
        ) from err


def _render(template: str, row: Mapping[str, Any], task: TaskSpec, item_id: str) -> str:
    return render_prompt(template, row, task.prompt_format, task=task.task, item_id=item_id)


def _field(row: Mapping[str, Any], name: str, task: TaskSpec, item_id: str) -> Any:
    if name not in row:
        raise TaskSpecError(
            f"Task {task.task!r}: field {name!r} is not a column of item {item_id!r}."
            f"{did_you_mean(name, list(row))}",
            fix=f"columns are {sorted(row)}.",
        )
    return row[name]


def _choices(row: Mapping[str, Any], task: TaskSpec, item_id: str) -> list[str]:
    if task.choices is not None:
        return [str(c) for c in task.choices]
    choices = _field(row, task.choices_field or "", task, item_id)
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise TaskSpecError(f"Task {task.task!r}: item {item_id!r} needs a list of >= 2 choices.")
    return [str(c) for c in choices]


def _gold_index(row: Mapping[str, Any], task: TaskSpec, item_id: str, choices: list[str]) -> int:
    gold = _field(row, task.label_field or "", task, item_id)
    if isinstance(gold, str):  # the choice's text first; a numeric string is an index
        if gold in choices:
            return choices.index(gold)
        if not gold.strip().lstrip("-").isdigit():
            raise TaskSpecError(
                f"Task {task.task!r}: item {item_id!r}: label {gold!r} is not one of the "
                f"choices {choices}.",
                fix="label_field must hold the correct choice's index or its text.",
            )
    index = int(gold)
    if not 0 <= index < len(choices):
        raise TaskSpecError(
            f"Task {task.task!r}: item {item_id!r}: gold index {index} is outside the "
            f"{len(choices)} choices."
        )
    return index


def _target_text(row: Mapping[str, Any], task: TaskSpec, item_id: str) -> str:
    """The answer a few-shot example shows after its prompt."""
    if task.format == "generative":
        return str(_field(row, task.target_field or "", task, item_id))
    choices = _choices(row, task, item_id)
    return choices[_gold_index(row, task, item_id, choices)]


def _item_ids(rows, task: TaskSpec, yaml_path: Path) -> list[str]:
    if task.id_field is None:
        return [f"{task.task}-{i:05d}" for i in range(len(rows))]
    if task.id_field not in rows.column_names:
        raise TaskSpecError(
            f"Task file {str(yaml_path)!r}: id_field {task.id_field!r} is not a column."
            f"{did_you_mean(task.id_field, rows.column_names)}",
            fix=f"columns are {rows.column_names}.",
        )
    ids = [str(v) for v in rows[task.id_field]]
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise TaskSpecError(
                f"Task file {str(yaml_path)!r}: item id {item_id!r} appears twice.",
                fix="item ids must be unique within a task.",
            )
        seen.add(item_id)
    return ids


def _fewshot_rows(task: TaskSpec, base: Path, yaml_path: Path, rows, ids) -> list[tuple[str, dict]]:
    """(id, row) candidates for few-shot examples, in a fixed order."""
    if task.num_fewshot == 0:
        return []
    if task.fewshot_examples is not None:
        return [(f"fewshot-{i}", dict(r)) for i, r in enumerate(task.fewshot_examples)]
    if task.fewshot_split is None or task.fewshot_split == task.dataset.split:
        return list(zip(ids, (dict(r) for r in rows)))[: task.num_fewshot + 1]
    shots = _load_rows(task.dataset, base, task.fewshot_split, yaml_path)
    return [(f"fewshot-{i}", dict(r)) for i, r in enumerate(shots)][: task.num_fewshot]


def _build_item(task: TaskSpec, item_id: str, row: dict, prefix_shots: list) -> Item:
    if task.format == "classification":
        label = _field(row, task.label_field or "", task, item_id)
        return Item(
            task=task.task,
            id=item_id,
            format="classification",
            prompt=str(_field(row, task.input_field or "", task, item_id)),
            target=label if isinstance(label, str) else int(label),
            head=task.head or task.task,
            metric=task.main_metric,
        )
    shots = [(sid, srow) for sid, srow in prefix_shots if sid != item_id][: task.num_fewshot]
    parts = [
        _render(task.prompt or "", srow, task, sid)
        + task.target_delimiter
        + _target_text(srow, task, sid)
        for sid, srow in shots
    ]
    parts.append(_render(task.prompt or "", row, task, item_id))
    context = task.description + task.fewshot_delimiter.join(parts)
    if task.format == "multiple_choice":
        choices = _choices(row, task, item_id)
        return Item(
            task=task.task,
            id=item_id,
            format="multiple_choice",
            prompt=context,
            target=_gold_index(row, task, item_id, choices),
            choices=tuple(task.target_delimiter + c for c in choices),
            metric=task.main_metric,
            choice_texts=tuple(choices),
        )
    return Item(
        task=task.task,
        id=item_id,
        format="generative",
        prompt=context,
        target=str(_field(row, task.target_field or "", task, item_id)),
        generation=GenerationSpec(
            max_new_tokens=task.max_new_tokens,
            stop=tuple(task.stop),
            answer_regex=task.answer_regex,
            ignore_case=task.ignore_case,
        ),
        metric=task.main_metric,
    )


def load_task(path: str | Path, limit: int | None = None) -> Task:
    """Load a task YAML (merge3's, or an lm-evaluation-harness task YAML) and render its
    items (the first ``limit`` if given)."""
    path = Path(path)
    raw = read_task_yaml(path)
    if is_lm_eval_yaml(raw):
        from evaluators.lm_eval_tasks import load_lm_eval_task

        return load_lm_eval_task(path, raw, limit)
    spec = validate_task_spec(raw, path)
    if spec.answer_regex is not None:
        import re

        try:
            re.compile(spec.answer_regex)
        except re.error as err:
            raise TaskSpecError(f"Task file {str(path)!r}: bad answer_regex: {err}.") from None
    rows = _load_rows(spec.dataset, path.parent, spec.dataset.split, path)
    ids = _item_ids(rows, spec, path)
    shots = _fewshot_rows(spec, path.parent, path, rows, ids)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
        ids = ids[: len(rows)]
    items = tuple(_build_item(spec, i, dict(r), shots) for i, r in zip(ids, rows))
    return Task(spec=spec, source=path, items=items)


def task_paths(specs: Iterable[str | Path]) -> list[Path]:
    """Expand task arguments: YAML files as given, directories to their sorted ``*.yaml``."""
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise TaskSpecError(f"Task directory {str(p)!r} holds no *.yaml task files.")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise TaskSpecError(
                f"Task {str(p)!r} is neither a task YAML nor a directory.",
                fix="pass --tasks as comma-separated YAML paths or directories of YAMLs.",
            )
    return out


def load_tasks(specs: Iterable[str | Path], limit: int | None = None) -> list[Task]:
    """Load several tasks; task names must be unique."""
    tasks = [load_task(p, limit=None) for p in task_paths(specs)]
    names = [t.name for t in tasks]
    for name in set(names):
        if names.count(name) > 1:
            raise TaskSpecError(f"Task name {name!r} is defined by more than one YAML.")
    if limit is not None:
        tasks = [Task(t.spec, t.source, t.items[:limit]) for t in tasks]
    return tasks


def read_item_ids(path: str | Path) -> dict[str, list[str]] | list[str]:
    """Read an item-id file (anchors): a JSON list of ids, ``{"items": [...]}``, or
    ``{<task>: [ids]}`` (``{"anchors": ...}`` is accepted as a synonym of ``items``).

    ``irt``'s ``anchors.json`` (``{"format": "merge3-irt-anchors-v1", "items": [{"item":
    "<task>/<id>", "index", "weight"}, ...]}``) is read as its list of ``task/id`` ids.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TaskSpecError(f"Cannot read item ids from {str(path)!r}: {err}.") from err
    if isinstance(raw, dict):
        for key in ("items", "anchors"):
            if key in raw and isinstance(raw[key], (list, dict)):
                raw = raw[key]
                break
    if isinstance(raw, list) and all(isinstance(i, dict) and "item" in i for i in raw):
        raw = [i["item"] for i in raw]  # irt's anchors.json: [{"item", "index", "weight"}]
    if isinstance(raw, list) and all(isinstance(i, (str, int)) for i in raw):
        return [str(i) for i in raw]
    if isinstance(raw, dict) and all(isinstance(v, list) for v in raw.values()):
        return {str(k): [str(i) for i in v] for k, v in raw.items()}
    raise TaskSpecError(
        f"Item-id file {str(path)!r} has an unknown layout.",
        fix='write a JSON list of ids, {"items": [ids]} or {"<task>": [ids], ...}.',
    )


def select_items(
    tasks: Sequence[Task], wanted: Mapping[str, Sequence[str]] | Sequence[str]
) -> list[Task]:
    """Keep only the wanted items (e.g. IRT anchors), in the order given; unknown ids fail.

    ``wanted`` is a list of ids (looked up in every task; ``task/id`` also works) or a
    mapping task -> ids. Tasks with no wanted item are dropped.
    """
    by_task = {t.name: {i.id: i for i in t.items} for t in tasks}
    chosen: dict[str, list[Item]] = {t.name: [] for t in tasks}
    if isinstance(wanted, Mapping):
        pairs = []
        for task_name, ids in wanted.items():
            if task_name not in by_task:
                raise ItemNotFoundError(
                    f"Task {task_name!r} of the item-id file is not among the tasks evaluated."
                    f"{did_you_mean(task_name, list(by_task))}",
                    fix=f"add its YAML to --tasks (loaded: {', '.join(by_task)}).",
                )
            pairs.extend((task_name, i) for i in ids)
    else:
        pairs = []
        for item_id in wanted:
            head, sep, tail = item_id.partition("/")
            if sep and head in by_task and tail in by_task[head]:
                pairs.append((head, tail))
                continue
            owners = [name for name, items in by_task.items() if item_id in items]
            if len(owners) > 1:
                raise ItemNotFoundError(
                    f"Item id {item_id!r} is in several tasks ({', '.join(owners)}).",
                    fix='qualify it as "task/id" or use a {"<task>": [ids]} file.',
                )
            pairs.append((owners[0] if owners else "", item_id))
    for task_name, item_id in pairs:
        items = by_task.get(task_name, {})
        if item_id not in items:
            known = [i for its in by_task.values() for i in its]
            raise ItemNotFoundError(
                f"Item id {item_id!r} is not in the bank of "
                f"{repr(task_name) if task_name else 'any task evaluated'}."
                f"{did_you_mean(item_id, known)}",
                fix="check the item-id file against the tasks' id_field (a stale item bank?).",
            )
        chosen[task_name].append(items[item_id])
    return [Task(t.spec, t.source, tuple(chosen[t.name])) for t in tasks if chosen[t.name]]
