"""`merge3 eval`: summary, logs in the formats.md layout, anchors, limits, errors."""

from __future__ import annotations

import argparse
import json

import pytest

from evaluators.cli import register
from merge3.cli import main


def _run(argv: list[str]) -> int:
    """Through the real `merge3` entry point (errors become one line on stderr, exit 2)."""
    return main(argv)


def test_register_adds_the_eval_verb() -> None:
    parser = argparse.ArgumentParser(prog="merge3")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "m", "--tasks", "t.yaml", "--backend", "vllm"])
    assert (args.model, args.tasks, args.backend, args.limit) == ("m", "t.yaml", "vllm", None)
    assert callable(args.func)


def test_eval_writes_logs_that_irt_reads(models, tasks, tmp_path, capsys) -> None:
    out = tmp_path / "logs"
    code = _run(["eval", str(models["gpt2_a"]), "--tasks",
                 f"{tasks['arith_gen']},{tasks['arith_mc']}", "--backend", "hf", "--limit", "7",
                 "--log-samples", str(out), "--no-progress"])
    assert code == 0
    assert "arith_mc" in capsys.readouterr().out
    results = json.loads((out / "gpt2_a" / "results.json").read_text())
    assert results["format"] == "merge3-eval-v1" and results["model"] == "gpt2_a"
    assert results["model_path"] == str(models["gpt2_a"])
    assert set(results["tasks"]) == {"arith_gen", "arith_mc"}
    assert results["tasks"]["arith_mc"]["metric"] == "acc"
    assert results["tasks"]["arith_gen"]["metric"] == "exact_match"
    lines = (out / "gpt2_a" / "samples_arith_mc.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 7 == results["tasks"]["arith_mc"]["n"]
    assert {"model", "task", "item", "score", "prediction", "target"} <= set(records[0])
    assert records[0]["item"] == "add-000" and records[0]["model"] == "gpt2_a"
    mean = sum(r["score"] for r in records) / 7
    assert results["tasks"]["arith_mc"]["score"] == pytest.approx(mean)


def test_eval_on_anchor_items_of_an_encoder(models, tasks, tmp_path) -> None:
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"topic": ["3", "11", "0"]}))
    out = tmp_path / "logs"
    assert _run(["eval", str(models["encoder"]), "--tasks", str(tasks["topic"]),
                 "--items", str(anchors), "--log-samples", str(out), "--model-name", "enc",
                 "--no-progress"]) == 0
    lines = (out / "enc" / "samples_topic.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["item"] for r in records] == ["3", "11", "0"]


def test_eval_errors_are_one_clear_line(models, tasks, tmp_path, capsys) -> None:
    anchors = tmp_path / "anchors.json"
    anchors.write_text('["add-404"]')
    code = _run(["eval", str(models["gpt2_a"]), "--tasks", str(tasks["arith_mc"]),
                 "--items", str(anchors)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'add-404' is not in the bank" in err and "Fix:" in err
    assert _run(["eval", str(models["gpt2_a"]), "--tasks", str(tmp_path / "nope.yaml")]) == 2


def test_help_has_an_example(capsys) -> None:
    with pytest.raises(SystemExit):
        _run(["eval", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "merge3 eval" in text and "--log-samples" in text


def test_logs_load_as_an_irt_response_matrix(models, tasks, tmp_path) -> None:
    """The contract of docs/formats.md, checked with the reader irt actually uses."""
    from irt.loaders import load_merge3_eval_logs

    out = tmp_path / "logs"
    for name in ("gpt2_a", "gpt2_b"):
        assert _run(["eval", str(models[name]), "--tasks", str(tasks["arith_mc"]),
                     "--limit", "6", "--log-samples", str(out), "--no-progress"]) == 0
    matrix = load_merge3_eval_logs(out)
    assert sorted(matrix.model_ids) == ["gpt2_a", "gpt2_b"]
    assert len(matrix.item_ids) == 6 and matrix.item_ids[0] == "arith_mc/add-000"
    samples = (out / "gpt2_b" / "samples_arith_mc.jsonl").read_text().splitlines()
    row = matrix.model_ids.index("gpt2_b")
    assert list(matrix.scores[row]) == [json.loads(line)["score"] for line in samples]


def test_eval_max_length_option(models, tasks, tmp_path, capsys) -> None:
    out = tmp_path / "logs"
    assert _run(["eval", str(models["encoder"]), "--tasks", str(tasks["topic"]), "--limit", "3",
                 "--max-length", "8", "--log-samples", str(out), "--no-progress"]) == 0
    assert _run(["eval", str(models["encoder"]), "--tasks", str(tasks["topic"]),
                 "--max-length", "100000", "--no-progress"]) == 2
    assert "--max-length 100000 does not fit" in capsys.readouterr().err
