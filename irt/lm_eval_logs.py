"""lm-evaluation-harness ``--log_samples`` output -> records (docs/formats.md).

lm-eval 0.4 writes ``OUT/<sanitized model name>/samples_<task>_<date>.jsonl`` (one line per
doc and filter: ``doc_id``, the metric fields, ``filter``) and ``results_<date>.json``
(``model_name``). A model's id is taken from its output folder: lm-eval's sanitized
folder of a pretrained path (``__srv__models__gpt2_a``) is the path's last component
(``gpt2_a``, the name ``merge3 eval`` logs it under), any other folder its own name; a
``names`` map renames (keys: folder, model_name or id). A rerun that scores fewer docs of
a task (``--limit``) than an earlier run in the same folder is warned about: its
latest run is read, and the docs only the earlier run has stay missing.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from irt.errors import ResponseFileError
from irt.records import Record, check_score, is_merge3_results, read_jsonl
from irt.responses import item_key

__all__ = ["LM_EVAL_METRICS", "ShrunkRunWarning", "lm_eval_model_id", "lm_eval_records",
           "sanitize_model_name"]

# Metric fields looked for, in order, when an lm-eval record does not list its metrics.
LM_EVAL_METRICS = ("acc", "exact_match", "acc_norm", "em", "f1", "pass@1", "mcc", "bleu")
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+?)(?:_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-.:]+))?$")


class ShrunkRunWarning(UserWarning):
    """The latest lm-eval run of a task scored fewer docs than an earlier one."""


def sanitize_model_name(model_name: str) -> str:
    """lm-eval's output folder name for a model (``lm_eval.utils.sanitize_model_name``)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", model_name)


def _results_model_name(directory: Path) -> str | None:
    for results in sorted(directory.glob("results*.json"), reverse=True):
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        config = data.get("config")
        name = data.get("model_name") or (config.get("model_name")
                                          if isinstance(config, dict) else None)
        if name:
            return str(name)
    return None


def lm_eval_model_id(directory: Path, names: Mapping[str, str] | None = None) -> str:
    """The id of the model whose lm-eval output folder is ``directory``."""
    folder = directory.name
    model_name = _results_model_name(directory)
    derived = folder
    if model_name and sanitize_model_name(model_name) == folder:
        derived = Path(model_name.rstrip("/\\")).name or folder
    for key in (folder, model_name):  # the id itself is renamed with the other formats'
        if names and key and key in names:
            return names[key]
    return derived


def _records(path: Path, model: str, metric: str | None, filter_name: str | None,
             ) -> list[Record]:
    match = _SAMPLES_NAME.match(path.stem)
    if not match:
        raise ResponseFileError(path, "is not named samples_<task>[_<date>].jsonl.",
                                fix="pass the files written by lm_eval --log_samples.")
    task = match["task"]
    records = []
    chosen_filter = filter_name
    for line, obj in read_jsonl(path):
        if "doc_id" not in obj:
            merge3_like = {"item", "score"} <= set(obj)
            raise ResponseFileError(
                path, "record has no 'doc_id'" + (" (its 'item' and 'score' are those of a "
                                                  "merge3 eval log)" if merge3_like else "")
                + ".", line=line,
                fix="pass merge3 eval logs as their OUT or model directory (with "
                    "results.json)" if merge3_like else
                    "use lm-evaluation-harness --log_samples output.")
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
        score = check_score(value, path, line, f"metric {field!r}")
        records.append(Record(model, item_key(task, str(obj["doc_id"])), task, score,
                              f"{path}, line {line}"))
    return records


def _doc_ids(path: Path) -> set[str]:
    return {str(obj["doc_id"]) for _, obj in read_jsonl(path) if "doc_id" in obj}


def _latest_per_task(files: Sequence[Path]) -> list[Path]:
    """lm-eval writes one file per task and run; keep the latest run of each task, and
    warn when it scored fewer docs than an earlier run (``--limit``)."""
    runs: dict[tuple[Path, str], list[tuple[str, Path]]] = {}
    for f in files:
        match = _SAMPLES_NAME.match(f.stem)
        task, date = (match["task"], match["date"] or "") if match else (f.stem, "")
        runs.setdefault((f.parent, task), []).append((date, f))
    latest = []
    for (folder, task), found in runs.items():
        found.sort()
        newest = found[-1][1]
        latest.append(newest)
        if len(found) == 1:
            continue
        kept = _doc_ids(newest)
        for _, earlier in found[:-1]:
            lost = _doc_ids(earlier) - kept
            if lost:
                example = min(lost, key=lambda d: (len(d), d))
                warnings.warn(ShrunkRunWarning(
                    f"{newest}: the latest lm-eval run of task {task!r} in {folder} scored "
                    f"{len(kept)} docs, {len(lost)} fewer than the earlier run {earlier.name} "
                    f"(e.g. doc_id {example}, an --limit rerun?); those docs are left missing. "
                    "Rerun without --limit, or move the run you want to keep into its own "
                    "folder."), stacklevel=3)
                break
    return sorted(latest)


def _merge3_folder(path: Path) -> bool:
    return is_merge3_results(path.parent / "results.json")


def lm_eval_records(paths: Sequence[str | Path] | str | Path, metric: str | None = None,
                    filter_name: str | None = None, model: str | None = None,
                    names: Mapping[str, str] | None = None) -> list[Record]:
    """Records of lm-eval sample files: files, model folders or output directories
    (searched recursively; merge3 eval log folders in them are left out)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(f for f in sorted(p.rglob("samples_*.jsonl")) if not _merge3_folder(f))
        elif p.exists():
            if _merge3_folder(p):
                raise ResponseFileError(p, "is a merge3 eval log (its results.json is "
                                        "merge3-eval-v1), not lm-eval output.",
                                        fix="load it with load_responses or "
                                            "load_merge3_eval_logs (its model directory).")
            files.append(p)
        else:
            raise ResponseFileError(p, "does not exist.", fix="check the path.")
    if not files:
        raise ResponseFileError(", ".join(map(str, paths)), "holds no samples_*.jsonl file.",
                                fix="run lm_eval with --log_samples --output_path DIR.")
    records: list[Record] = []
    for f in _latest_per_task(files):
        records.extend(_records(f, model or lm_eval_model_id(f.parent, names), metric,
                                filter_name))
    return records
