"""Read past model responses into a ResponseMatrix (formats in docs/formats.md).

Three inputs: a long table (CSV/parquet ``model,item,score[,task]``), lm-evaluation-harness
``--log_samples`` output (``samples_<task>_<date>.jsonl``: ``doc_id`` plus metric fields),
and merge3 evaluation logs (``OUT/<model>/results.json`` + ``samples_<task>.jsonl``).
Every parse error names the file and line. Non-binary scores are binarised per model
with the mean-preserving threshold (tinyBenchmarks, Polo et al. 2024).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irt.errors import ResponseFileError
from irt.responses import ResponseMatrix, item_key

__all__ = [
    "load_responses",
    "load_long_table",
    "load_lm_eval_samples",
    "load_merge3_eval_logs",
    "LM_EVAL_METRICS",
]

# Metric fields looked for, in order, when an lm-eval record does not list its metrics.
LM_EVAL_METRICS = ("acc", "exact_match", "acc_norm", "em", "f1", "pass@1", "mcc", "bleu")
_LM_EVAL_NAME = re.compile(r"^samples_(?P<task>.+?)(?:_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-.:]+))?$")


@dataclass(frozen=True, slots=True)
class _Record:
    model: str
    item: str
    task: str
    score: float
    where: str  # "file, line n" for duplicate reports


def _check_score(value: object, path: Path, line: int, field: str) -> float:
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


def _frame(records: Sequence[_Record]):  # noqa: ANN202 - pandas DataFrame
    import pandas as pd

    return pd.DataFrame({"model": [r.model for r in records], "item": [r.item for r in records],
                         "task": [r.task for r in records],
                         "score": np.array([r.score for r in records], dtype=float),
                         "where": [r.where for r in records]})


def _assemble(parts: Sequence[object], binarize: bool) -> ResponseMatrix:
    """Join tables (columns model, item, task, score, where) into one ResponseMatrix."""
    import pandas as pd

    frames = [p if isinstance(p, pd.DataFrame) else _frame(p) for p in parts]
    frame = pd.concat(frames, ignore_index=True) if frames else _frame([])
    duplicated = frame.duplicated(["model", "item"], keep="first").to_numpy()
    if duplicated.any():
        second = int(np.argmax(duplicated))
        model, item = frame["model"].iat[second], frame["item"].iat[second]
        first = int(np.flatnonzero(((frame["model"] == model) & (frame["item"] == item))
                                   .to_numpy())[0])
        raise ResponseFileError(frame["where"].iat[second], f"duplicate response of model "
                                f"{model!r} to item {item!r} (first seen at "
                                f"{frame['where'].iat[first]}).",
                                fix="keep one score per model and item.")
    model_codes, models = pd.factorize(frame["model"], sort=False)
    item_codes, items = pd.factorize(frame["item"], sort=False)
    scores = np.full((len(models), len(items)), np.nan)
    scores[model_codes, item_codes] = frame["score"].to_numpy(dtype=float)
    first_task = frame.drop_duplicates("item")["task"].to_numpy()
    matrix = ResponseMatrix(scores, tuple(models), tuple(items), tuple(first_task))
    return matrix.binarized() if binarize else matrix


# ---------------------------------------------------------------------- long tables
def _long_table_records(path: Path):  # noqa: ANN202 - pandas DataFrame
    import pandas as pd

    suffix = path.suffix.lower()
    sep = "\t" if suffix == ".tsv" else ","
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
            first_line, unit = 0, "row"  # parquet rows are numbered from 1
        else:
            # a row longer than the header: pandas would shift it into the index (or, with
            # index_col=False, drop the extra fields) and read wrong columns silently
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep,
                                    index_col=False)
            first_line, unit = 1, "line"  # the header is line 1
    except (pd.errors.ParserWarning, pd.errors.ParserError) as err:
        line, fields, width = _first_long_row(path, sep)
        if line is None:
            raise ResponseFileError(path, f"cannot be read as a table "
                                          f"({' '.join(str(err).split())}).",
                                    fix="write a CSV or parquet file with columns "
                                        "model,item,score[,task].") from None
        raise ResponseFileError(path, f"{fields} fields where the header has {width}.",
                                line=line, fix="give every row the header's columns "
                                "(model,item,score[,task]); quote values holding the "
                                "separator.") from None
    except Exception as err:  # pandas raises many types; all mean "unreadable"
        raise ResponseFileError(path, f"cannot be read as a table "
                                      f"({' '.join(str(err).split())}).",
                                fix="write a CSV or parquet file with columns "
                                    "model,item,score[,task].") from None
    missing = [c for c in ("model", "item", "score") if c not in frame.columns]
    if missing:
        raise ResponseFileError(path, f"missing column(s) {missing}; found "
                                f"{list(frame.columns)}.", line=1 if first_line else None,
                                fix="name the columns model,item,score (and optionally task).")
    lines = np.arange(len(frame)) + 1 + first_line
    model = frame["model"].astype("string").fillna("")
    item = frame["item"].astype("string").fillna("")
    empty = ((model.str.strip() == "") | (item == "")).to_numpy()
    if empty.any():
        raise ResponseFileError(path, "empty model or item.", line=int(lines[empty.argmax()]),
                                fix="every row needs a model and an item id.")
    raw = frame["score"]
    text = raw.astype("string").fillna("").str.strip()
    score = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(score) & (text != "").to_numpy() & (text.str.lower() != "nan").to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise ResponseFileError(path, f"score {raw.iat[row]!r} is not a number.",
                                line=int(lines[row]), fix="write score as a number in [0, 1] "
                                "(or leave it empty for a missing response).")
    out_of_range = ~np.isnan(score) & ((score < 0) | (score > 1))
    if out_of_range.any():
        row = int(out_of_range.argmax())
        raise ResponseFileError(path, f"score {score[row]} is outside [0, 1].",
                                line=int(lines[row]),
                                fix="rescale the metric to [0, 1] before loading.")
    task = (frame["task"].astype("string").fillna("") if "task" in frame.columns
            else pd.Series([""] * len(frame), dtype="string"))
    prefix = task + "/"
    has_prefix = np.array([i.startswith(p) for i, p in zip(item, prefix)]) if len(item) else \
        np.zeros(0, dtype=bool)
    key = item.where((task == "") | has_prefix, prefix + item)
    where = pd.Series([f"{path}, {unit} "] * len(frame)) + pd.Series(lines).astype(str)
    return pd.DataFrame({"model": model.to_numpy(dtype=object), "item": key.to_numpy(dtype=object),
                         "task": task.to_numpy(dtype=object), "score": score,
                         "where": where.to_numpy(dtype=object)})


def _first_long_row(path: Path, sep: str) -> tuple[int | None, int, int]:
    """(line, fields, header fields) of the first row longer than the header."""
    import csv

    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.reader(handle, delimiter=sep)
        width = len(next(rows, []))
        for row in rows:
            if len(row) > width:
                return rows.line_num, len(row), width
    return None, 0, width


def load_long_table(path: str | Path, binarize: bool = True) -> ResponseMatrix:
    """Load a CSV/TSV/parquet table with columns ``model,item,score`` and optional ``task``."""
    return _assemble([_long_table_records(Path(path))], binarize)


# ---------------------------------------------------------------------- jsonl helpers
def _read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
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


# ---------------------------------------------------------------------- lm-eval
def _lm_eval_model_name(directory: Path) -> str:
    for results in sorted(directory.glob("results*.json"), reverse=True):
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        name = data.get("model_name") or data.get("config", {}).get("model_name")
        if name:
            return str(name)
    return directory.name


def _lm_eval_records(path: Path, model: str, metric: str | None,
                     filter_name: str | None) -> list[_Record]:
    match = _LM_EVAL_NAME.match(path.stem)
    if not match:
        raise ResponseFileError(path, "is not named samples_<task>[_<date>].jsonl.",
                                fix="pass the files written by lm_eval --log_samples.")
    task = match["task"]
    records = []
    chosen_filter = filter_name
    for line, obj in _read_jsonl(path):
        if "doc_id" not in obj:
            raise ResponseFileError(path, "record has no 'doc_id'.", line=line,
                                    fix="use lm-evaluation-harness --log_samples output.")
        record_filter = obj.get("filter")
        if chosen_filter is None:
            chosen_filter = record_filter
        if record_filter != chosen_filter:
            continue  # the same doc scored under another filter (e.g. flexible-extract)
        field = metric
        if field is None:
            listed = obj.get("metrics")
            candidates = ([m for m in listed if isinstance(m, str)] if isinstance(listed, list)
                          else []) + list(LM_EVAL_METRICS)
            field = next((m for m in candidates if m in obj), None)
        if field is None or field not in obj:
            raise ResponseFileError(path, f"record has no metric field "
                                    f"{metric or 'of ' + str(list(LM_EVAL_METRICS))}.",
                                    line=line, fix="pass --metric NAME with a field the "
                                    "records have.")
        value = obj[field]
        if isinstance(value, list | tuple) and len(value) >= 1:
            value = value[0]  # some metrics log (score, extra) pairs
        score = _check_score(value, path, line, f"metric {field!r}")
        records.append(_Record(model, item_key(task, str(obj["doc_id"])), task, score,
                               f"{path}, line {line}"))
    return records


def _latest_per_task(files: Sequence[Path]) -> list[Path]:
    """lm-eval writes one file per task and run; keep the latest run of each task."""
    best: dict[tuple[Path, str], tuple[str, Path]] = {}
    for f in files:
        match = _LM_EVAL_NAME.match(f.stem)
        task, date = (match["task"], match["date"] or "") if match else (f.stem, "")
        key = (f.parent, task)
        if key not in best or date > best[key][0]:
            best[key] = (date, f)
    return sorted(p for _, p in best.values())


def load_lm_eval_samples(paths: Sequence[str | Path] | str | Path, metric: str | None = None,
                         filter_name: str | None = None, binarize: bool = True,
                         model: str | None = None) -> ResponseMatrix:
    """Load lm-evaluation-harness ``samples_<task>_<date>.jsonl`` files.

    ``paths``: files, model directories (``<output>/<model>/samples_*.jsonl``) or an output
    directory holding several. The model name is ``model_name`` from the neighbouring
    ``results_*.json`` or the directory name; ``metric`` defaults to the record's first
    listed metric (``acc``, ``exact_match``...).
    """
    return _assemble([_lm_eval_all(paths, metric, filter_name, model)], binarize)


def _lm_eval_all(paths: Sequence[str | Path] | str | Path, metric: str | None,
                 filter_name: str | None, model: str | None) -> list[_Record]:
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("samples_*.jsonl")))
        elif p.exists():
            files.append(p)
        else:
            raise ResponseFileError(p, "does not exist.", fix="check the path.")
    if not files:
        raise ResponseFileError(", ".join(map(str, paths)), "holds no samples_*.jsonl file.",
                                fix="run lm_eval with --log_samples --output_path DIR.")
    records: list[_Record] = []
    for f in _latest_per_task(files):
        records.extend(_lm_eval_records(f, model or _lm_eval_model_name(f.parent), metric,
                                        filter_name))
    return records


# ---------------------------------------------------------------------- merge3 logs
def _merge3_model_records(model_dir: Path) -> list[_Record]:
    results_path = model_dir / "results.json"
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ResponseFileError(results_path, f"invalid JSON ({err.msg}).", line=err.lineno,
                                fix="rewrite it with merge3 eval --log-samples.") from None
    if results.get("format") != "merge3-eval-v1":
        raise ResponseFileError(results_path, f"format {results.get('format')!r} is not "
                                "'merge3-eval-v1'.", fix="re-run merge3 eval --log-samples.")
    model = str(results.get("model") or model_dir.name)
    records = []
    for f in sorted(model_dir.glob("samples_*.jsonl")):
        for line, obj in _read_jsonl(f):
            for key in ("task", "item", "score"):
                if key not in obj:
                    raise ResponseFileError(f, f"record has no {key!r}.", line=line,
                                            fix="each line needs model, task, item, score "
                                                "(docs/formats.md).")
            if obj.get("model", model) != model:
                raise ResponseFileError(f, f"model {obj.get('model')!r} differs from "
                                        f"{model!r} in results.json.", line=line,
                                        fix="keep one model per directory.")
            task = str(obj["task"])
            score = _check_score(obj["score"], f, line, "score")
            records.append(_Record(model, item_key(task, str(obj["item"])), task, score,
                                   f"{f}, line {line}"))
    return records


def load_merge3_eval_logs(path: str | Path, binarize: bool = True) -> ResponseMatrix:
    """Load ``merge3 eval --log-samples`` output: one model directory or a directory of them."""
    return _assemble([_merge3_all(Path(path))], binarize)


def _merge3_all(path: Path) -> list[_Record]:
    if (path / "results.json").exists():
        return _merge3_model_records(path)
    model_dirs = sorted(p.parent for p in path.glob("*/results.json"))
    if not model_dirs:
        raise ResponseFileError(path, "holds no <model>/results.json.",
                                fix="pass the OUT directory of merge3 eval --log-samples.")
    return [r for d in model_dirs for r in _merge3_model_records(d)]


# ---------------------------------------------------------------------- dispatcher
def _is_merge3_dir(path: Path) -> bool:
    candidates = [path / "results.json", *path.glob("*/results.json")]
    for c in candidates:
        try:
            if json.loads(c.read_text(encoding="utf-8")).get("format") == "merge3-eval-v1":
                return True
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
    return False


def load_responses(paths: Sequence[str | Path] | str | Path, binarize: bool = True,
                   metric: str | None = None, filter_name: str | None = None) -> ResponseMatrix:
    """Load and join any mix of long tables, lm-eval sample files and merge3 eval logs.

    The format of each path is detected: ``.csv/.tsv/.parquet`` → long table; a directory
    with ``results.json`` of format merge3-eval-v1 → merge3 logs; other ``.jsonl`` files or
    directories → lm-eval samples. Items are keyed ``task/item`` across all formats.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    records: list[object] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ResponseFileError(path, "does not exist.", fix="check the path.")
        if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".parquet"):
            records.append(_long_table_records(path))
        elif path.is_dir() and _is_merge3_dir(path):
            records.append(_merge3_all(path))
        elif path.is_dir() or path.suffix.lower() == ".jsonl":
            records.append(_lm_eval_all([path], metric, filter_name, None))
        else:
            raise ResponseFileError(path, "has an unknown response format.",
                                    fix="pass a .csv/.parquet table, lm-eval samples_*.jsonl "
                                        "or a merge3 eval log directory.")
    return _assemble(records, binarize)
