"""The driver's guards, on real searches: one owner per run directory, a resume only of the
same search, preflight before any candidate, a search whose every candidate failed fails,
exports never overwrite the search's inputs, and ``evaluation.limit``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from merge3.cli import main
from merge3.errors import RecipeError
from search.config import parse_config
from search.records import finished_records
from search.run import SearchFailedError, run_search
from search.strategy import make_sampler, open_study
from search.testing.kills import driver
from search.testing.setting import search_config


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def small_search(search_setting, ray_local, tmp_path_factory):
    """A finished 2 × 1 search, for resume and export checks."""
    run_dir = tmp_path_factory.mktemp("driver") / "run"
    config = search_config(search_setting, name="driver",
                           strategy={"population": 2, "generations": 1})
    outcome = run_search(parse_config(config), run_dir, progress=False,
                         config_text=yaml.safe_dump(config))
    return config, run_dir, outcome


def test_a_second_search_on_a_run_dir_in_use_is_refused_naming_the_owner(
        search_setting, ray_local, tmp_path, capsys):
    config = search_config(search_setting, name="owned",
                           strategy={"population": 2, "generations": 1})
    # candidate 0 sleeps 60 s before it is scored: the first search is surely still running
    config["workers"]["fault"] = {"mode": "hang", "keys": [0], "seconds": 60}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    address = ray_local.get_runtime_context().gcs_address
    args = ["search", str(path), "--run-dir", str(run_dir), "--address", address, "-q"]
    first = driver(args)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "search_state.json").exists():
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the first search did not start"
            time.sleep(0.2)
        owner = json.loads((run_dir / ".lock").read_text())
        assert owner["pid"] == first.pid
        state = (run_dir / "search_state.json").read_text()
        for second in (args, [*args, "--resume"]):
            assert main(second) == 2
            err = capsys.readouterr().err
            assert f"in use by another search: pid {first.pid} on {owner['host']}" in err, err
        assert first.poll() is None  # the owner is untouched ...
        assert (run_dir / "search_state.json").read_text() == state  # ... and so is its state
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()


def test_a_resume_with_a_changed_search_is_refused_and_more_generations_allowed(
        small_search, caplog):
    config, run_dir, outcome = small_search
    anchors = {p.name: p.read_text() for p in (run_dir / "anchors").iterdir()}
    weight = config["genome"]["weight"]
    changed = {
        "fitness.anchors": {**config, "fitness": {**config["fitness"], "anchors": 8}},
        "method": {**config, "method": "ties"},
        "genome.weight.high": {**config, "genome": {"weight": {**weight, "high": 2.0}}},
    }
    for key, other in changed.items():
        with pytest.raises(RecipeError, match=rf"--resume of .*{key}.* changed.*new run dir"):
            run_search(parse_config(other), run_dir, resume=True, progress=False)
    # nothing was rewritten by the refused resumes
    assert {p.name: p.read_text() for p in (run_dir / "anchors").iterdir()} == anchors
    assert not (run_dir / ".lock").exists()
    longer = {**config, "strategy": {**config["strategy"], "generations": 2}}
    with caplog.at_level("WARNING", logger="merge3.search"):
        resumed = run_search(parse_config(longer), run_dir, resume=True, progress=False)
    assert "resumed with changed strategy.generations" in caplog.text
    assert resumed.evaluated + resumed.failed == 4
    assert json.loads((run_dir / "search_state.json").read_text())["config"]["strategy"][
        "generations"] == 2


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_expert_with_one_nan_is_refused_before_any_candidate(search_setting, tmp_path,
                                                                capsys):
    broken = tmp_path / "broken_expert"
    shutil.copytree(search_setting["experts"]["alpha"], broken)
    weights = next(broken.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(n for n, t in tensors.items() if t.is_floating_point() and t.dim() == 2)
    tensors[name].view(-1)[5] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    config = search_config(search_setting, name="nan")
    config["experts"]["alpha"] = str(broken)
    run_dir = tmp_path / "run"
    code = main(["search", str(_write(tmp_path, config)), "--run-dir", str(run_dir), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and name in err and "NaN" in err and "broken_expert" in err, err
    assert not run_dir.exists()


def test_item_banks_of_other_tasks_are_refused_before_any_candidate(search_setting, tmp_path,
                                                                    capsys):
    banks = tmp_path / "banks"
    shutil.copytree(search_setting["banks"] / "beta", banks / "alpha")  # alpha's bank: beta's
    shutil.copytree(search_setting["banks"] / "beta", banks / "beta")
    config = search_config(search_setting, name="swapped",
                           fitness={"item_bank": str(banks)})
    run_dir = tmp_path / "run"
    code = main(["search", str(_write(tmp_path, config)), "--run-dir", str(run_dir), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "item bank of task 'alpha'" in err and "task 'alpha' does not have" in err, err
    assert not run_dir.exists()


def test_a_search_whose_every_candidate_failed_exits_non_zero_with_the_cause(
        search_setting, ray_local, tmp_path, capsys):
    config = search_config(search_setting, name="all-fail",
                           strategy={"population": 2, "generations": 1})
    config["workers"]["fault"] = {"mode": "raise", "attempts": [1, 2]}  # every key, twice
    run_dir = tmp_path / "run"
    code = main(["search", str(_write(tmp_path, config)), "--run-dir", str(run_dir), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Every candidate of the search failed (2 of 2)" in err
    assert "trial 0: InjectedFault: injected fault on candidate 0 (attempt 2)" in err, err
    assert not (run_dir / ".lock").exists()
    with pytest.raises(SearchFailedError):  # the same from the API
        run_search(parse_config({**config, "name": "all-fail-2"}), tmp_path / "again",
                   progress=False)


def test_export_refuses_the_searchs_base_experts_and_run_dir(small_search, search_setting,
                                                             tmp_path, capsys):
    config, run_dir, outcome = small_search
    member = outcome.front[0].number
    base = search_setting["base"]
    expert = search_setting["experts"]["alpha"]
    before = {p: _tree_digest(p) for p in (base, expert)}
    for target, how in ((base, "is the input model"),
                        (expert / "merged", "lies inside the input model"),
                        (expert.parent, "contains the input model"),
                        (run_dir / "exported", "lies inside the input model")):
        code = main(["export", str(run_dir), "--trial", str(member), str(target),
                     "--overwrite", "-q"])
        err = capsys.readouterr().err
        assert code == 2 and how in err, (target, err)
    assert {p: _tree_digest(p) for p in (base, expert)} == before
    assert not (expert / "merged").exists() and not (run_dir / "exported").exists()
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), "--trial", str(member), str(out), "-q"]) == 0
    assert json.loads((out / "merge3_manifest.json").read_text())["trial"] == member


def test_limit_caps_the_items_of_full_evaluations(search_setting, ray_local, tmp_path):
    config = search_config(search_setting, name="limited",
                           strategy={"population": 2, "generations": 1},
                           fitness={"estimator": "full", "full_every": 1},
                           evaluation={"limit": 7})
    config["fitness"].pop("item_bank")
    run_dir = tmp_path / "run"
    outcome = run_search(parse_config(config), run_dir, progress=False)
    study = open_study(name="limited", storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler("nsga2", population=2, seed=0), objectives=2)
    records = finished_records(study, ["alpha", "beta"])
    assert [r.items_evaluated for r in records] == [2 * 7, 2 * 7]  # 7 per task, not 40
    lines = (run_dir / "full_evals.jsonl").read_text().splitlines()
    full = [json.loads(line) for line in lines]
    # accuracies over 7 items: multiples of 1/7
    assert full and all(abs(7 * v - round(7 * v)) < 1e-9
                        for r in full for v in r["accuracy"].values())
    assert outcome.item_evaluations == 2 * 7 * (len(records) + len(full))
