"""One response per (model, item) as read from a file, and the checks every loader shares."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from irt.errors import ResponseFileError

__all__ = ["Record", "check_score", "read_jsonl", "MERGE3_LOG_FORMAT", "is_merge3_results"]

MERGE3_LOG_FORMAT = "merge3-eval-v1"


@dataclass(frozen=True, slots=True)
class Record:
    model: str
    item: str
    task: str
    score: float
    where: str  # "file, line n" for duplicate reports


def check_score(value: object, path: Path, line: int, field: str) -> float:
    """A score in [0, 1] (NaN for a missing one), or an error naming the file and line."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ResponseFileError(path, f"{field} {value!r} is not a number.", line=line,
                                fix=f"write {field} as a number in [0, 1] (or leave it "
                                    "empty for a missing response).") from None
    if math.isnan(score):
        return score
    if not 0.0 <= score <= 1.0:
        raise ResponseFileError(path, f"{field} {score} is outside [0, 1].", line=line,
                                fix="rescale the metric to [0, 1] before loading.")
    return score


def read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number, object) of each non-empty line; errors name the file and line."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as err:
        raise ResponseFileError(path, f"cannot be opened ({err.strerror}).",
                                fix="check the path.") from None
    with handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise ResponseFileError(path, f"invalid JSON ({err.msg} at column {err.colno}).",
                                        line=line_no,
                                        fix="write one JSON object per line.") from None
            if not isinstance(obj, dict):
                raise ResponseFileError(path, "a line must be a JSON object.", line=line_no,
                                        fix="write one JSON object per line.")
            yield line_no, obj


def is_merge3_results(path: Path) -> bool:
    """Whether ``path`` is a merge3 eval log's ``results.json`` (format merge3-eval-v1)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == MERGE3_LOG_FORMAT
