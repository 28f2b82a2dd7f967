"""Evaluation logs in the ``merge3-eval-v1`` format of docs/formats.md (``irt`` reads them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluators.items import ItemResult
from merge3.eval_logs import LOG_FORMAT, write_model_log

__all__ = ["LOG_FORMAT", "summarize", "write_eval_logs"]


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


def write_eval_logs(
    out_dir: str | Path,
    model_name: str,
    model_path: str,
    results: Sequence[ItemResult],
    metrics: Mapping[str, str],
) -> Path:
    """Write ``out_dir/<model_name>/results.json`` and one ``samples_<task>.jsonl`` per task
    (the format of :mod:`merge3.eval_logs`). Returns the model's log directory."""
    summary = summarize(results, metrics)
    samples: dict[str, list[dict[str, Any]]] = {task: [] for task in summary}
    for r in results:
        samples[r.task].append({"item": r.item, "score": float(r.score),
                                "prediction": _jsonable(r.prediction),
                                "target": _jsonable(r.target)})
    return write_model_log(out_dir, model_name, model_path, samples, summary)
