"""Evaluation logs in the ``merge3-eval-v1`` format of docs/formats.md (``irt`` reads them)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluators.items import ItemResult

__all__ = ["LOG_FORMAT", "summarize", "write_eval_logs"]

LOG_FORMAT = "merge3-eval-v1"


def summarize(
    results: Sequence[ItemResult], metrics: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """``{task: {"metric", "score" (mean), "n"}}`` in the order tasks first appear."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = out.setdefault(r.task, {"metric": metrics.get(r.task, "acc"), "score": 0.0, "n": 0})
        entry["score"] += r.score
        entry["n"] += 1
    for entry in out.values():
        entry["score"] = entry["score"] / entry["n"] if entry["n"] else 0.0
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    """Write to a temp file beside ``path`` and rename it: never a half-written log."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_eval_logs(
    out_dir: str | Path,
    model_name: str,
    model_path: str,
    results: Sequence[ItemResult],
    metrics: Mapping[str, str],
) -> Path:
    """Write ``out_dir/<model_name>/results.json`` and one ``samples_<task>.jsonl`` per task.

    Returns the model's log directory.
    """
    model_dir = Path(out_dir) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results, metrics)
    by_task: dict[str, list[str]] = {task: [] for task in summary}
    for r in results:
        record = {
            "model": model_name,
            "task": r.task,
            "item": r.item,
            "score": float(r.score),
            "prediction": _jsonable(r.prediction),
            "target": _jsonable(r.target),
        }
        by_task[r.task].append(json.dumps(record))
    for task, lines in by_task.items():
        _atomic_write(model_dir / f"samples_{task}.jsonl", "".join(line + "\n" for line in lines))
    results_json = {
        "format": LOG_FORMAT,
        "model": model_name,
        "model_path": model_path,
        "tasks": summary,
    }
    _atomic_write(model_dir / "results.json", json.dumps(results_json, indent=2) + "\n")
    return model_dir
