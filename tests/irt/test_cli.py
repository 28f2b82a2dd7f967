"""The `merge3 irt` verbs, through merge3's main CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import irt
from merge3.cli import main


def _run(argv: list[str]) -> int:
    return main(argv)


@pytest.fixture(scope="module")
def table(tmp_path_factory, simulated) -> Path:  # noqa: ANN001
    matrix = simulated[0].select_models(range(120)).select_items(range(80))
    rows = [{"model": m, "item": i.split("/", 1)[1], "task": t, "score": s}
            for m, row in zip(matrix.model_ids, matrix.scores)
            for i, t, s in zip(matrix.item_ids, matrix.item_tasks, row)]
    path = tmp_path_factory.mktemp("cli") / "responses.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_calibrate_anchors_estimate(table: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bank = tmp_path / "bank"
    assert _run(["irt", "calibrate", str(table), "--out", str(bank), "--dims", "2"]) == 0
    assert (bank / "bank.json").exists()
    anchors = tmp_path / "anchors.json"
    assert _run(["irt", "anchors", str(bank), "--k", "10", "--method", "stratified",
                 "--out", str(anchors)]) == 0
    assert json.loads(anchors.read_text())["k"] == 10
    capsys.readouterr()
    assert _run(["irt", "estimate", str(bank), str(table), "--anchors", str(anchors),
                 "--estimator", "p-irt", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 120 and {r["items_used"] for r in out} == {10}
    truth = pd.read_csv(table).groupby("model")["score"].mean()
    err = np.mean([abs(r["estimate"] - truth[r["model"]]) for r in out])
    assert err < 0.12
    assert _run(["irt", "estimate", str(bank), str(table), "--anchors", str(anchors)]) == 0
    table_out = capsys.readouterr().out
    assert irt.DEFAULT_ESTIMATOR in table_out and "stderr_pp" in table_out
    assert len(table_out.strip().splitlines()) == 121


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.csv"
    bad.write_text("model,item,score\na,1,0.5\na,2,oops\n")
    assert _run(["irt", "calibrate", str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv, line 3" in err and "Fix:" in err
    assert _run(["irt", "anchors", str(tmp_path / "nothing"), "--out", "x.json"]) == 2


def test_every_verb_has_help_with_an_example(capsys) -> None:  # noqa: ANN001
    for verb in ("calibrate", "anchors", "estimate", "validate"):
        with pytest.raises(SystemExit) as exit_info:
            _run(["irt", verb, "--help"])
        assert exit_info.value.code == 0
        assert f"merge3 irt {verb}" in capsys.readouterr().out


def test_validate_writes_report_and_plot(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert _run(["irt", "validate", str(table), "--out", str(out), "--ks", "5,10",
                 "--seeds", "0", "--selectors", "random,kmeans-irt", "--dims", "1"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["split"]) == {"random", "strongest", "strongest-half (no recal.)",
                                     "strongest-half (recalibrated)"}
    assert len(summary) == 4 * 2 * 2 * 6
    assert summary["mae_pp"].between(0, 50).all()
    assert (out / "mae_vs_k.png").stat().st_size > 10_000
    # the run's k closest to 50 (10 here), never a k it did not run
    report = (out / "report.md").read_text()
    assert "k = 50" not in report and "MAE (pp) at k = 10" in report
    at_10 = summary[(summary["split"] == "random") & (summary["k"] == 10)]
    best = at_10.sort_values("mae_pp").iloc[0]
    assert (f"Best at k = 10 on random held-out models: **{best['estimator']} with "
            f"{best['selector']} anchors, {best['mae_pp']:.2f} pp MAE**") in report


def test_calibrate_per_task_writes_the_bank_folder_a_search_reads(table: Path, tmp_path: Path,
                                                                  capsys) -> None:  # noqa: ANN001
    from irt.bank import load_bank

    banks = tmp_path / "banks"
    assert _run(["irt", "calibrate", str(table), "--out", str(banks), "--dims", "1",
                 "--per-task"]) == 0
    rows = pd.read_csv(table)
    tasks = sorted(rows["task"].unique())
    assert sorted(p.name for p in banks.iterdir()) == tasks
    for task in tasks:
        bank = load_bank(banks / task)
        expected = {f"{task}/{i}" for i in rows.loc[rows["task"] == task, "item"]}
        assert set(bank.item_ids) == expected  # only that task's items
    assert capsys.readouterr().out.count("item bank ") == len(tasks)


@pytest.fixture(scope="module")
def planted_table(tmp_path_factory, simulated) -> Path:  # noqa: ANN001
    """The CLI table with item task1/4 answered backwards: better models fail it."""
    matrix = simulated[0].select_models(range(120)).select_items(range(80))
    scores = matrix.scores.copy()
    backwards = matrix.item_ids.index("task1/4")
    scores[:, backwards] = 1 - scores[:, backwards]
    rows = [{"model": m, "item": i.split("/", 1)[1], "task": t, "score": s}
            for m, row in zip(matrix.model_ids, scores)
            for i, t, s in zip(matrix.item_ids, matrix.item_tasks, row)]
    path = tmp_path_factory.mktemp("planted") / "responses.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_calibrate_and_validate_report_flagged_items(planted_table: Path, tmp_path: Path,
                                                     capsys) -> None:  # noqa: ANN001
    bank = tmp_path / "bank"
    assert _run(["irt", "calibrate", str(planted_table), "--out", str(bank), "--dims", "1"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("flagged: ")]
    assert len(line) == 1 and "task1/4" in line[0] and "1 negative" in line[0]
    assert json.loads((bank / "bank.json").read_text())["flagged"]["items"]["task1/4"] == \
        "negative"
    out = tmp_path / "report"
    assert _run(["irt", "validate", str(planted_table), "--out", str(out), "--ks", "5",
                 "--seeds", "0", "--selectors", "random", "--estimators", "mean",
                 "--dims", "1", "--no-recalibration"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("flagged: ") == 2 and "task1/4" in printed  # random + strongest
    info = json.loads((out / "info.json").read_text())
    assert all(c["flagged"]["items"].get("task1/4") == "negative"
               for c in info["calibrations"])
    report = (out / "report.md").read_text()
    assert "Flagged items" in report and "task1/4" in report
