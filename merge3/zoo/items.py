"""Item pools: each task's splits as a ``datasets`` DatasetDict on disk, plus the task
YAML the evaluators read (docs/formats.md, "Task specs").

Columns: ``item_id`` (stable), ``text``, ``label`` (int), ``label_name``, ``source``
(``file:line`` or ``pydoc_data.topics:<topic>``), ``n_tokens`` and ``n_words``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from merge3.zoo.tasks import Example, Splits, TaskDef

__all__ = ["save_item_pool", "load_split", "task_yaml_path", "SPLITS"]

SPLITS = ("train", "validation", "test")


def _rows(examples: list[Example], task: TaskDef, tokenizer) -> dict[str, list]:
    lengths = [len(ids) for ids in tokenizer([e.text for e in examples])["input_ids"]] \
        if examples else []
    return {
        "item_id": [e.item_id for e in examples],
        "text": [e.text for e in examples],
        "label": [e.label for e in examples],
        "label_name": [task.labels[e.label] for e in examples],
        "source": [e.source for e in examples],
        "n_tokens": lengths,
        "n_words": [len(e.text.split()) for e in examples],
    }


def task_yaml_path(zoo_dir: str | Path, task: str) -> Path:
    return Path(zoo_dir) / "tasks" / f"{task}.yaml"


def save_item_pool(zoo_dir: str | Path, task: TaskDef, splits: Splits, tokenizer) -> Path:
    """Write ``items/<task>`` (Arrow) and ``tasks/<task>.yaml``; returns the YAML path."""
    import datasets

    datasets.disable_progress_bars()
    zoo_dir = Path(zoo_dir)
    features = datasets.Features({
        "item_id": datasets.Value("string"),
        "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(task.labels)),
        "label_name": datasets.Value("string"),
        "source": datasets.Value("string"),
        "n_tokens": datasets.Value("int32"),
        "n_words": datasets.Value("int32"),
    })
    dataset = datasets.DatasetDict({
        split: datasets.Dataset.from_dict(_rows(getattr(splits, split), task, tokenizer),
                                          features=features)
        for split in SPLITS
    })
    dataset.save_to_disk(str(zoo_dir / "items" / task.name))
    spec = {
        "task": task.name,
        "format": "classification",
        "dataset": {"path": f"../items/{task.name}", "split": "test"},
        "id_field": "item_id",
        "input_field": "text",
        "label_field": "label",
    }
    path = task_yaml_path(zoo_dir, task.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {task.description} ({len(task.labels)} classes: {', '.join(task.labels)})\n"
    path.write_text(header + yaml.safe_dump(spec, sort_keys=False))
    return path


def load_split(zoo_dir: str | Path, task: str, split: str):
    """One split of a task's item pool as a ``datasets.Dataset``."""
    import datasets

    return datasets.load_from_disk(str(Path(zoo_dir) / "items" / task))[split]
