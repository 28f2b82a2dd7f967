"""``merge3 eval --route mass`` on the test-size zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from merge3.cli import main


def test_eval_routes_with_mass_and_writes_logs(zoo: Path, tmp_path: Path, capsys, evaluated,
                                               test_items) -> None:
    experts = (f"zoo:minilm/expert/exception_type@test,"
               f"word_order={zoo / 'models' / 'expert-word_order'}")
    code = main(["eval", "zoo:minilm/base@test", "--tasks", str(zoo / "tasks"), "--route", "mass",
                 "--route-experts", experts, "--limit", "6", "--log-samples", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "routing at encoder.layer.4.intermediate.dense.weight" in out
    # The same items through the Python API (the session's MassEvaluator) score the same.
    results, _ = evaluated
    by_id = {(r.task, r.item): r for r in results}
    for task in ("exception_type", "word_order"):
        lines = (tmp_path / "mass-base" / f"samples_{task}.jsonl").read_text().splitlines()
        assert len(lines) == 6
        for line in lines:
            record = json.loads(line)
            reference = by_id[(task, record["item"])]
            assert (record["score"], record["prediction"]) == (reference.score,
                                                               reference.prediction)
    summary = json.loads((tmp_path / "mass-base" / "results.json").read_text())
    assert summary["tasks"]["word_order"]["n"] == 6


def test_route_options_in_help_and_their_errors(zoo: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["eval", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--route-experts" in text and "--route mass" in text and "routing (MASS)" in text
    tasks = str(zoo / "tasks")
    assert main(["eval", "zoo:minilm/base@test", "--tasks", tasks,
                 "--route-experts", "a=b"]) == 2
    assert "add --route mass" in capsys.readouterr().err
    assert main(["eval", "zoo:minilm/base@test", "--tasks", tasks, "--route", "mass"]) == 2
    assert "needs --route-experts" in capsys.readouterr().err
    # the registered backend `mass` is the same as --route mass
    assert main(["eval", "zoo:minilm/base@test", "--tasks", tasks, "--backend", "mass"]) == 2
    assert "needs --route-experts" in capsys.readouterr().err
    assert main(["eval", "zoo:minilm/base@test", "--tasks", tasks, "--route", "mass",
                 "--route-experts", "a=b", "--backend", "vllm"]) == 2
    assert "not 'vllm'" in capsys.readouterr().err
    twice = "zoo:minilm/expert/word_order@test,word_order=" + str(zoo / "models" / "base")
    assert main(["eval", "zoo:minilm/base@test", "--tasks", tasks, "--route", "mass",
                 "--route-experts", twice]) == 2
    assert "Two experts are named 'word_order'" in capsys.readouterr().err
