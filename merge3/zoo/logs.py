"""Evaluation logs in the layout of docs/formats.md ("Evaluation logs"), which
``merge3 irt calibrate`` and ``merge3 eval --log-samples`` share.

``OUT/<model>/results.json`` and ``OUT/<model>/samples_<task>.jsonl``, one line per item.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TaskResponses", "write_log", "read_log", "read_logs"]

FORMAT = "merge3-eval-v1"


@dataclass(frozen=True)
class TaskResponses:
    """One model's per-item results on one task (parallel lists)."""

    item_ids: Sequence[str]
    predictions: Sequence[int]
    targets: Sequence[int]

    @property
    def scores(self) -> list[float]:
        return [float(p == t) for p, t in zip(self.predictions, self.targets)]

    @property
    def accuracy(self) -> float:
        scores = self.scores
        return sum(scores) / len(scores) if scores else 0.0


def write_log(out_dir: str | Path, model: str, model_path: str,
              responses: Mapping[str, TaskResponses]) -> Path:
    """Write one model's log directory ``out_dir/<model>/`` (files replaced atomically)."""
    folder = Path(out_dir) / model
    folder.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for task, resp in responses.items():
        lines = [
            json.dumps({"model": model, "task": task, "item": item, "score": score,
                        "prediction": int(pred), "target": int(target)})
            for item, score, pred, target in zip(resp.item_ids, resp.scores, resp.predictions,
                                                 resp.targets)
        ]
        _atomic_write(folder / f"samples_{task}.jsonl", "\n".join(lines) + "\n")
        tasks[task] = {"metric": "acc", "score": resp.accuracy, "n": len(resp.item_ids)}
    results = {"format": FORMAT, "model": model, "model_path": model_path, "tasks": tasks}
    _atomic_write(folder / "results.json", json.dumps(results, indent=2) + "\n")
    return folder


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_log(folder: str | Path) -> dict[str, dict[str, float]]:
    """{task: {item id: score}} of one model's log directory."""
    folder = Path(folder)
    out: dict[str, dict[str, float]] = {}
    for path in sorted(folder.glob("samples_*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out.setdefault(row["task"], {})[row["item"]] = float(row["score"])
    return out


def read_logs(root: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {task: {item: score}}} for every model directory under ``root``."""
    root = Path(root)
    return {p.name: read_log(p) for p in sorted(root.iterdir()) if (p / "results.json").is_file()}
