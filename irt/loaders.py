"""Read past model responses into a ResponseMatrix (formats in docs/formats.md).

Three inputs: a long table (CSV/parquet ``model,item,score[,task]``), lm-evaluation-harness
``--log_samples`` output (``samples_<task>_<date>.jsonl``: ``doc_id`` plus metric fields),
and merge3 evaluation logs (``OUT/<model>/results.json`` + ``samples_<task>.jsonl``).
Every parse error names the file and line. Non-binary scores are binarised per model
with the mean-preserving threshold (tinyBenchmarks, Polo et al. 2024).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from irt.errors import ResponseFileError
from irt.lm_eval_logs import LM_EVAL_METRICS, ShrunkRunWarning, lm_eval_records
from irt.records import Record, check_score, is_merge3_results, read_jsonl
from irt.responses import ResponseMatrix, item_key

__all__ = [
    "load_responses",
    "load_long_table",
    "load_lm_eval_samples",
    "load_merge3_eval_logs",
    "LM_EVAL_METRICS",
    "ShrunkRunWarning",
]


def _frame(records: Sequence[Record]):  # noqa: ANN202 - pandas DataFrame
    import pandas as pd

    return pd.DataFrame({"model": [r.model for r in records], "item": [r.item for r in records],
                         "task": [r.task for r in records],
                         "score": np.array([r.score for r in records], dtype=float),
                         "where": [r.where for r in records]})


def _assemble(parts: Sequence[object], binarize: bool,
              names: Mapping[str, str] | None = None) -> ResponseMatrix:
    """Join tables (columns model, item, task, score, where) into one ResponseMatrix;
    ``names`` renames models (old id -> new id)."""
    import pandas as pd

    frames = [p if isinstance(p, pd.DataFrame) else _frame(p) for p in parts]
    frame = pd.concat(frames, ignore_index=True) if frames else _frame([])
    if names:
        frame["model"] = frame["model"].map(lambda m: names.get(m, m))
    duplicated = frame.duplicated(["model", "item"], keep="first").to_numpy()
    if duplicated.any():
        second = int(np.argmax(duplicated))
        model, item = frame["model"].iat[second], frame["item"].iat[second]
        first = int(np.flatnonzero(((frame["model"] == model) & (frame["item"] == item))
                                   .to_numpy())[0])
        raise ResponseFileError(frame["where"].iat[second], f"duplicate response of model "
                                f"{model!r} to item {item!r} (first seen at "
                                f"{frame['where'].iat[first]}).",
                                fix="keep one score per model and item (two models logged "
                                    "under one name: tell them apart with --name OLD=NEW).")
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
    # every check and conversion runs once per distinct value (150 models, 3000 items and
    # two score strings in a 450 000-row table), not once per row: 3.8 s -> 0.9 s
    model, model_codes, models = _distinct_text(frame["model"])
    _, item_codes, items = _distinct_text(frame["item"])
    empty = (np.array([not m.strip() for m in models], dtype=bool)[model_codes]
             | np.array([not i for i in items], dtype=bool)[item_codes])
    if empty.any():
        raise ResponseFileError(path, "empty model or item.", line=int(lines[empty.argmax()]),
                                fix="every row needs a model and an item id.")
    raw = frame["score"]
    score_codes, raw_scores = pd.factorize(raw, use_na_sentinel=False)
    texts = pd.Series([_text(v).strip() for v in raw_scores], dtype=object)
    values = pd.to_numeric(texts.where(texts != "", None), errors="coerce").to_numpy(dtype=float)
    not_number = np.isnan(values) & (texts != "").to_numpy() & \
        (texts.str.lower() != "nan").to_numpy()
    score = values[score_codes]
    bad = not_number[score_codes]
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
    if "task" in frame.columns:
        task, task_codes, tasks = _distinct_text(frame["task"])
    else:
        task, task_codes, tasks = np.full(len(frame), "", dtype=object), \
            np.zeros(len(frame), dtype=np.intp), [""]
    pairs, pair_codes = np.unique(item_codes * len(tasks) + task_codes, return_inverse=True)
    keys = np.array([item_key(tasks[p % len(tasks)], items[p // len(tasks)]) for p in pairs],
                    dtype=object)
    label = f"{path}, {unit} "
    where = np.array([label + str(n) for n in lines.tolist()], dtype=object)
    return pd.DataFrame({"model": model, "item": keys[pair_codes.reshape(-1)], "task": task,
                         "score": score, "where": where})


def _text(value: object) -> str:
    """A table cell as text: missing (None/NaN) is the empty string."""
    import pandas as pd

    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) \
        else str(value)


def _distinct_text(column):  # noqa: ANN001, ANN202 - pandas Series
    """(text per row (object array), code per row, distinct texts): one str() per value."""
    import pandas as pd

    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    texts = [_text(v) for v in uniques]
    return np.array(texts, dtype=object)[codes], codes, texts


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


# ---------------------------------------------------------------------- lm-eval
def load_lm_eval_samples(paths: Sequence[str | Path] | str | Path, metric: str | None = None,
                         filter_name: str | None = None, binarize: bool = True,
                         model: str | None = None,
                         names: Mapping[str, str] | None = None) -> ResponseMatrix:
    """Load lm-evaluation-harness ``samples_<task>_<date>.jsonl`` files.

    ``paths``: files, model directories (``<output>/<model>/samples_*.jsonl``) or an output
    directory holding several. The model id comes from the output folder (irt.lm_eval_logs:
    ``__srv__models__gpt2_a`` -> ``gpt2_a``), ``names`` renames (folder, model_name or id
    -> id) and ``model`` overrides it; ``metric`` defaults to the record's first listed
    metric (``acc``, ``exact_match``...).
    """
    return _assemble([lm_eval_records(paths, metric, filter_name, model, names)], binarize,
                     None if model else names)


# ---------------------------------------------------------------------- merge3 logs
def _merge3_model_records(model_dir: Path, only: Path | None = None) -> list[Record]:
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
    files = [only] if only is not None else sorted(model_dir.glob("samples_*.jsonl"))
    for f in files:
        for line, obj in read_jsonl(f):
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
            score = check_score(obj["score"], f, line, "score")
            records.append(Record(model, item_key(task, str(obj["item"])), task, score,
                                  f"{f}, line {line}"))
    return records


def load_merge3_eval_logs(path: str | Path, binarize: bool = True) -> ResponseMatrix:
    """Load ``merge3 eval --log-samples`` output: one model directory or a directory of them."""
    return _assemble([_merge3_all(Path(path))], binarize)


def _merge3_all(path: Path) -> list[Record]:
    if (path / "results.json").exists():
        return _merge3_model_records(path)
    model_dirs = sorted(p.parent for p in path.glob("*/results.json"))
    if not model_dirs:
        raise ResponseFileError(path, "holds no <model>/results.json.",
                                fix="pass the OUT directory of merge3 eval --log-samples.")
    return [r for d in model_dirs for r in _merge3_model_records(d)]


# ---------------------------------------------------------------------- dispatcher
def _directory_records(path: Path, metric: str | None, filter_name: str | None,
                       names: Mapping[str, str] | None) -> list[Record]:
    """Every merge3 eval log folder and lm-eval sample file under ``path``: merge3's own
    ``samples_<task>.jsonl`` are read as merge3 logs, never as lm-eval files."""
    merge3_dirs = sorted({r.parent for r in path.rglob("results.json") if is_merge3_results(r)})
    has_lm_eval = any(not is_merge3_results(f.parent / "results.json")
                      for f in path.rglob("samples_*.jsonl"))
    if not merge3_dirs and not has_lm_eval:
        raise ResponseFileError(path, "holds no merge3 eval logs (<model>/results.json) and "
                                "no lm-eval samples_*.jsonl.",
                                fix="pass the OUT directory of merge3 eval --log-samples or of "
                                    "lm_eval --log_samples --output_path.")
    records = [r for d in merge3_dirs for r in _merge3_model_records(d)]
    if has_lm_eval:
        records += lm_eval_records([path], metric, filter_name, None, names)
    return records


def load_responses(paths: Sequence[str | Path] | str | Path, binarize: bool = True,
                   metric: str | None = None, filter_name: str | None = None,
                   names: Mapping[str, str] | None = None) -> ResponseMatrix:
    """Load and join any mix of long tables, lm-eval sample files and merge3 eval logs.

    The format of each path is detected: ``.csv/.tsv/.parquet`` → long table; a directory
    → every merge3 eval log folder (``results.json`` of format merge3-eval-v1) and every
    lm-eval ``samples_*.jsonl`` under it; a ``.jsonl`` file → merge3's when a merge3
    ``results.json`` is beside it, else lm-eval's. Items are keyed ``task/item`` across all
    formats; ``names`` renames models (for lm-eval, keys may also be the output folder or
    the pretrained path).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    records: list[object] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ResponseFileError(path, "does not exist.", fix="check the path.")
        if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".parquet"):
            records.append(_long_table_records(path))
        elif path.is_dir():
            records.append(_directory_records(path, metric, filter_name, names))
        elif path.suffix.lower() == ".jsonl" and is_merge3_results(path.parent / "results.json"):
            records.append(_merge3_model_records(path.parent, only=path))
        elif path.suffix.lower() == ".jsonl":
            records.append(lm_eval_records([path], metric, filter_name, None, names))
        else:
            raise ResponseFileError(path, "has an unknown response format.",
                                    fix="pass a .csv/.parquet table, lm-eval samples_*.jsonl "
                                        "or a merge3 eval log directory.")
    return _assemble(records, binarize, names)
