"""The evaluation-log format (``merge3-eval-v1``, docs/formats.md "Evaluation logs").

One writer and one reader, shared by ``merge3 eval --log-samples`` (evaluators.logs), the
zoo's population build and ``merge3 irt calibrate``'s sources::

    OUT/<model>/results.json           {"format", "model", "model_path", "tasks": {task: summary}}
    OUT/<model>/samples_<task>.jsonl   one JSON object per item: model, task, item, score, ...

Every file is written to a temporary name beside it and renamed, so a reader never sees
half a log.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LOG_FORMAT", "write_model_log", "read_log", "read_logs"]

LOG_FORMAT = "merge3-eval-v1"


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


def write_model_log(out_dir: str | Path, model: str, model_path: str,
                    samples: Mapping[str, Sequence[Mapping[str, Any]]],
                    summary: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write one model's log directory ``out_dir/<model>/`` and return it.

    ``samples``: per task, one record per item (``model`` and ``task`` are filled in);
    ``summary``: per task, ``{"metric", "score", "n"}``.
    """
    folder = Path(out_dir) / model
    folder.mkdir(parents=True, exist_ok=True)
    for task, rows in samples.items():
        lines = "".join(json.dumps({"model": model, "task": task, **row}) + "\n" for row in rows)
        _atomic_write(folder / f"samples_{task}.jsonl", lines)
    results = {"format": LOG_FORMAT, "model": model, "model_path": model_path,
               "tasks": dict(summary)}
    _atomic_write(folder / "results.json", json.dumps(results, indent=2) + "\n")
    return folder


def read_log(folder: str | Path) -> dict[str, dict[str, float]]:
    """{task: {item id: score}} of one model's log directory."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted(Path(folder).glob("samples_*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out.setdefault(row["task"], {})[row["item"]] = float(row["score"])
    return out


def read_logs(root: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {task: {item: score}}} for every model directory under ``root``."""
    root = Path(root)
    return {p.name: read_log(p) for p in sorted(root.iterdir()) if (p / "results.json").is_file()}
