"""Loaders on small files written in each documented format (docs/formats.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from irt import (
    ResponseFileError,
    load_lm_eval_samples,
    load_long_table,
    load_merge3_eval_logs,
    load_responses,
)

DATE = "2025-03-01T10-20-30.123456"


def _lm_eval_record(doc_id: int, acc: float, filt: str = "none") -> dict:
    """One line of lm-evaluation-harness --log_samples output (multiple-choice task)."""
    return {
        "doc_id": doc_id,
        "doc": {"question": f"q{doc_id}?", "choices": ["a", "b"], "answer": 1},
        "target": 1,
        "arguments": {"gen_args_0": {"arg_0": f"Question: q{doc_id}?\nAnswer:", "arg_1": " a"},
                      "gen_args_1": {"arg_0": f"Question: q{doc_id}?\nAnswer:", "arg_1": " b"}},
        "resps": [[["-2.3", "False"]], [["-0.4", "True"]]],
        "filtered_resps": [["-2.3", "False"], ["-0.4", "True"]],
        "filter": filt,
        "metrics": ["acc", "acc_norm"],
        "doc_hash": "5f1c", "prompt_hash": "9ab2", "target_hash": "6b86",
        "acc": acc,
        "acc_norm": 1.0 - acc,
    }


def _write_lm_eval(root: Path, model: str, task: str, accs: list[float],
                   date: str = DATE) -> Path:
    model_dir = root / model.replace("/", "__")
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / f"results_{date}.json").write_text(json.dumps(
        {"results": {task: {"acc,none": float(np.mean(accs))}}, "model_name": model,
         "config": {"model": "hf", "model_args": f"pretrained={model}"}}))
    path = model_dir / f"samples_{task}_{date}.jsonl"
    with path.open("w") as f:
        for doc_id, acc in enumerate(accs):
            f.write(json.dumps(_lm_eval_record(doc_id, acc)) + "\n")
    return path


def test_lm_eval_samples_directory(tmp_path: Path) -> None:
    _write_lm_eval(tmp_path, "org/model-a", "arc_easy", [1, 0, 1])
    _write_lm_eval(tmp_path, "org/model-a", "piqa", [0, 0])
    _write_lm_eval(tmp_path, "org/model-b", "arc_easy", [0, 1, 1])
    m = load_lm_eval_samples(tmp_path)
    # ids from the output folders (org__model-a: the pretrained name's last part)
    assert m.model_ids == ("model-a", "model-b")
    assert set(m.item_ids) == {"arc_easy/0", "arc_easy/1", "arc_easy/2", "piqa/0", "piqa/1"}
    a = m.select_models([0]).aligned_to(["arc_easy/0", "arc_easy/1", "piqa/1"]).scores[0]
    np.testing.assert_array_equal(a, [1, 0, 0])
    b = m.select_models([1]).aligned_to(["arc_easy/1", "piqa/0"]).scores[0]
    np.testing.assert_array_equal(b[:1], [1])
    assert np.isnan(b[1])  # model-b never ran piqa: a missing entry, not a zero
    # the metric choice is honoured: acc_norm is 1 − acc in these files
    norm = load_lm_eval_samples(tmp_path, metric="acc_norm")
    np.testing.assert_array_equal(norm.scores[~np.isnan(norm.scores)],
                                  1 - m.scores[~np.isnan(m.scores)])


def test_lm_eval_keeps_latest_run_and_one_filter(tmp_path: Path) -> None:
    _write_lm_eval(tmp_path, "m", "arc_easy", [0, 0], date="2024-01-01T00-00-00.000001")
    _write_lm_eval(tmp_path, "m", "arc_easy", [1, 1], date="2025-01-01T00-00-00.000001")
    path = tmp_path / "m" / "samples_gsm8k_2025-01-01T00-00-00.000001.jsonl"
    with path.open("w") as f:  # gsm8k logs each doc once per filter
        for doc_id, (strict, flexible) in enumerate([(0.0, 1.0), (1.0, 1.0)]):
            for filt, value in (("strict-match", strict), ("flexible-extract", flexible)):
                rec = {"doc_id": doc_id, "filter": filt, "metrics": ["exact_match"],
                       "exact_match": value, "target": "4", "resps": [["4"]]}
                f.write(json.dumps(rec) + "\n")
    m = load_lm_eval_samples(tmp_path / "m")
    got = dict(zip(m.item_ids, m.scores[0]))
    assert got["arc_easy/0"] == 1 and got["arc_easy/1"] == 1
    assert (got["gsm8k/0"], got["gsm8k/1"]) == (0, 1)
    flex = load_lm_eval_samples(tmp_path / "m", filter_name="flexible-extract")
    assert dict(zip(flex.item_ids, flex.scores[0]))["gsm8k/0"] == 1


def test_long_csv_and_parquet_with_tasks_and_missing(tmp_path: Path) -> None:
    frame = pd.DataFrame({"model": ["a", "a", "b", "b", "a"],
                          "item": ["1", "2", "1", "2", "1"],
                          "score": [1.0, 0.0, 0.0, 1.0, 1.0],
                          "task": ["x", "x", "x", "x", "y"]})
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_parquet(tmp_path / "r.parquet")
    for name in ("r.csv", "r.parquet"):
        m = load_long_table(tmp_path / name)
        assert m.item_ids == ("x/1", "x/2", "y/1")
        np.testing.assert_array_equal(m.scores[0], [1, 0, 1])
        assert np.isnan(m.scores[1, 2])  # b has no answer to y/1


def test_long_table_binarises_fractional_scores(tmp_path: Path) -> None:
    rows = ["model,item,score"] + [f"a,{i},{s}" for i, s in enumerate([0.9, 0.6, 0.3, 0.2])]
    (tmp_path / "f.csv").write_text("\n".join(rows) + "\n")
    m = load_long_table(tmp_path / "f.csv")
    np.testing.assert_array_equal(m.scores[0], [1, 1, 0, 0])
    raw = load_long_table(tmp_path / "f.csv", binarize=False)
    np.testing.assert_allclose(raw.scores[0], [0.9, 0.6, 0.3, 0.2])


def _write_merge3(root: Path, model: str, rows: list[tuple[str, str, float]]) -> None:
    d = root / model
    d.mkdir(parents=True)
    tasks = sorted({t for t, _, _ in rows})
    (d / "results.json").write_text(json.dumps({
        "format": "merge3-eval-v1", "model": model, "model_path": f"/ckpt/{model}",
        "tasks": {t: {"metric": "acc", "score": 0.5, "n": 2} for t in tasks}}))
    for t in tasks:
        with (d / f"samples_{t}.jsonl").open("w") as f:
            for task, item, score in rows:
                if task == t:
                    f.write(json.dumps({"model": model, "task": task, "item": item,
                                        "score": score, "prediction": 1, "target": 1}) + "\n")


def test_merge3_eval_logs_and_autodetection(tmp_path: Path) -> None:
    _write_merge3(tmp_path / "out", "m1", [("topic", "i1", 1.0), ("topic", "i2", 0.0)])
    _write_merge3(tmp_path / "out", "m2", [("topic", "i1", 0.0), ("sent", "s1", 1.0)])
    m = load_merge3_eval_logs(tmp_path / "out")
    assert m.model_ids == ("m1", "m2")
    assert set(m.item_ids) == {"topic/i1", "topic/i2", "sent/s1"}
    one = load_merge3_eval_logs(tmp_path / "out" / "m1")
    assert one.model_ids == ("m1",)
    # load_responses detects each format and joins them
    _write_lm_eval(tmp_path / "lm", "m3", "topic", [1, 1])
    both = load_responses([tmp_path / "out", tmp_path / "lm"])
    assert both.model_ids == ("m1", "m2", "m3")


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    path = _write_lm_eval(tmp_path, "m", "arc_easy", [1, 0])
    with path.open("a") as f:
        f.write('{"doc_id": 2, "acc": 1.0\n')
    with pytest.raises(ResponseFileError, match=r"samples_arc_easy.*line 3: invalid JSON"):
        load_lm_eval_samples(tmp_path)


def test_lm_eval_record_without_metric_is_named(tmp_path: Path) -> None:
    path = _write_lm_eval(tmp_path, "m", "arc_easy", [1])
    with path.open("a") as f:
        f.write(json.dumps({"doc_id": 1, "filter": "none", "resps": []}) + "\n")
    with pytest.raises(ResponseFileError, match="line 2: record has no metric"):
        load_lm_eval_samples(tmp_path)


def test_bad_csv_score_and_missing_column_are_named(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("model,item,score\na,1,1\na,2,yes\n")
    with pytest.raises(ResponseFileError, match=r"bad.csv, line 3: score 'yes' is not a num"):
        load_long_table(tmp_path / "bad.csv")
    (tmp_path / "range.csv").write_text("model,item,score\na,1,1.5\n")
    with pytest.raises(ResponseFileError, match=r"line 2: score 1.5 is outside"):
        load_long_table(tmp_path / "range.csv")
    (tmp_path / "cols.csv").write_text("model,question,score\na,1,1\n")
    with pytest.raises(ResponseFileError, match=r"missing column\(s\) \['item'\]"):
        load_long_table(tmp_path / "cols.csv")


def test_duplicate_response_names_both_lines(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("model,item,score\na,1,1\nb,1,0\na,1,0\n")
    with pytest.raises(ResponseFileError, match=r"line 4: duplicate.*line 2"):
        load_long_table(tmp_path / "dup.csv")


def test_merge3_log_without_score_is_named(tmp_path: Path) -> None:
    _write_merge3(tmp_path, "m1", [("topic", "i1", 1.0)])
    with (tmp_path / "m1" / "samples_topic.jsonl").open("a") as f:
        f.write(json.dumps({"model": "m1", "task": "topic", "item": "i2"}) + "\n")
    with pytest.raises(ResponseFileError, match=r"samples_topic.jsonl, line 2: .*'score'"):
        load_merge3_eval_logs(tmp_path / "m1")


# ---------------------------------------------------------------------- mixing with merge3
def test_lm_eval_model_id_is_the_output_folder_and_matches_merge3(tmp_path: Path) -> None:
    """lm-eval's folder __srv__models__gpt2_a (pretrained=/srv/models/gpt2_a) is model
    gpt2_a, the name merge3 eval logs the same checkpoint under: one row, not two."""
    _write_lm_eval(tmp_path / "runs" / "lm", "/srv/models/gpt2_a", "piqa", [1, 0])
    _write_merge3(tmp_path / "runs" / "m3", "gpt2_a", [("topic", "i1", 1.0)])
    # one directory holding both: merge3's samples_topic.jsonl is read as merge3's
    m = load_responses(tmp_path / "runs")
    assert m.model_ids == ("gpt2_a",)
    assert set(m.item_ids) == {"piqa/0", "piqa/1", "topic/i1"}
    # a folder lm-eval did not name keeps its own name
    renamed = tmp_path / "kept" / "my-run"
    renamed.parent.mkdir()
    (tmp_path / "runs" / "lm" / "__srv__models__gpt2_a").rename(renamed)
    assert load_lm_eval_samples(tmp_path / "kept").model_ids == ("my-run",)


def test_name_map_renames_by_folder_path_or_id(tmp_path: Path) -> None:
    _write_lm_eval(tmp_path, "/ckpt/a/model", "piqa", [1, 0])
    _write_lm_eval(tmp_path, "/ckpt/b/model", "piqa", [0, 0])
    with pytest.raises(ResponseFileError, match=r"duplicate response of model 'model'.*"
                                                r"Fix: .*--name OLD=NEW"):
        load_responses(tmp_path)
    m = load_responses(tmp_path, names={"__ckpt__a__model": "a", "/ckpt/b/model": "b"})
    assert m.model_ids == ("a", "b")
    np.testing.assert_array_equal(m.scores, [[1, 0], [0, 0]])
    _write_merge3(tmp_path / "m3", "c", [("piqa", "0", 1.0)])
    both = load_responses([tmp_path / "m3"], names={"c": "gamma"})
    assert both.model_ids == ("gamma",)


def test_a_shrunk_lm_eval_rerun_is_warned_about(tmp_path: Path) -> None:
    from irt.loaders import ShrunkRunWarning

    _write_lm_eval(tmp_path, "m", "arc", [1, 1, 1, 1], date="2024-01-01T00-00-00.000001")
    _write_lm_eval(tmp_path, "m", "arc", [0, 0], date="2025-01-01T00-00-00.000001")  # --limit 2
    with pytest.warns(ShrunkRunWarning, match=r"scored 2 docs, 2 fewer than the earlier run "
                                              r"samples_arc_2024.*doc_id 2"):
        m = load_lm_eval_samples(tmp_path)
    assert m.item_ids == ("arc/0", "arc/1")  # the latest run is the one read
    np.testing.assert_array_equal(m.scores[0], [0, 0])
    _write_lm_eval(tmp_path, "m", "arc", [1, 0, 1, 0], date="2026-01-01T00-00-00.000001")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ShrunkRunWarning)  # a full rerun: nothing to warn
        full = load_lm_eval_samples(tmp_path)
    np.testing.assert_array_equal(full.scores[0], [1, 0, 1, 0])


def test_merge3_sample_files_are_never_read_as_lm_eval(tmp_path: Path) -> None:
    _write_merge3(tmp_path, "m1", [("topic", "i1", 1.0), ("topic", "i2", 0.0)])
    samples = tmp_path / "m1" / "samples_topic.jsonl"
    one_file = load_responses(samples)
    assert one_file.model_ids == ("m1",) and one_file.item_ids == ("topic/i1", "topic/i2")
    with pytest.raises(ResponseFileError, match="is a merge3 eval log"):
        load_lm_eval_samples(samples)
    # without its results.json the record itself says what it is
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "samples_topic.jsonl").write_text(samples.read_text())
    with pytest.raises(ResponseFileError, match=r"no 'doc_id' \(its 'item' and 'score' are "
                                                r"those of a merge3 eval log\)"):
        load_responses(loose / "samples_topic.jsonl")


def test_calibrate_name_option_is_checked(tmp_path: Path, capsys) -> None:
    from merge3.cli import main

    _write_lm_eval(tmp_path, "/ckpt/a/model", "piqa", [1, 0])
    code = main(["irt", "calibrate", str(tmp_path), "--out", str(tmp_path / "bank"),
                 "--name", "__ckpt__a__model"])
    assert code == 2
    assert "--name '__ckpt__a__model' is not OLD=NEW" in capsys.readouterr().err
    assert not (tmp_path / "bank").exists()
