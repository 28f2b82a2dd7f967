"""Real searches: local Ray actors, an Optuna SQLite study, MLflow with a SQLite store."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from merge3.checkpoints import Checkpoint
from merge3.cli import main
from search.config import parse_config
from search.materialize import Materializer
from search.run import run_search
from search.strategy import fail_interrupted, make_sampler, open_study
from search.testing.setting import search_config
from tests.reliability.leaks import mlflow_texts, secret_values

PLANTED_SECRET, PLANTED_VALUE = "MERGE3_TEST_API_TOKEN", "tok-7f3a-planted-secret"


@pytest.fixture(scope="module")
def finished_search(search_setting, ray_local, tmp_path_factory):
    """One search whose workers fail on purpose: trial 1 on every attempt (recorded as
    failed) and trial 2 on its first attempt only (retried on another worker)."""
    run_dir = tmp_path_factory.mktemp("runs") / "s1"
    config = search_config(search_setting)
    config["workers"]["fault"] = {"mode": "raise", "keys": [1], "attempts": [1, 2]}
    config["fitness"]["full_every"] = 2  # after generation index 1: full evaluation + recal.
    # a secret in the driver's environment, as a user's shell has: it must not reach MLflow
    os.environ[PLANTED_SECRET] = PLANTED_VALUE
    try:
        outcome = run_search(parse_config(config), run_dir, progress=False,
                             config_text=yaml.safe_dump(config))
    finally:
        os.environ.pop(PLANTED_SECRET)
    return config, run_dir, outcome


def test_search_completes_despite_failing_candidates(finished_search):
    config, run_dir, outcome = finished_search
    assert outcome.evaluated + outcome.failed == 12
    assert outcome.failed == 1
    study = open_study(name="test-search", storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler("nsga2", population=4, seed=0), objectives=2)
    states = {t.number: t.state.name for t in study.trials}
    assert states[1] == "FAIL" and "injected fault" in study.trials[1].user_attrs["error"]
    assert sum(s == "COMPLETE" for s in states.values()) == 11
    assert outcome.front and all(0.0 <= r.estimates["alpha"] <= 1.0 for r in outcome.front)
    assert (run_dir / "fronts" / "lineage.png").exists()
    assert (run_dir / "fronts" / "front_gen002.png").exists()


def test_every_child_records_its_parents(finished_search):
    _, run_dir, _ = finished_search
    study = open_study(name="test-search", storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler("nsga2", population=4, seed=0), objectives=2)
    complete = {t.number: t for t in study.trials if t.state.name == "COMPLETE"}
    children = [t for t in complete.values() if t.user_attrs["generation"] >= 1]
    assert len(children) >= 4
    for child in children:
        parents = child.user_attrs["parents"]
        assert len(parents) == 2 and parents[0] != parents[1]
        for parent in parents:
            assert parent in complete and parent < child.number
            assert complete[parent].user_attrs["generation"] < child.user_attrs["generation"]
    first = [t for t in complete.values() if t.user_attrs["generation"] == 0]
    assert first and all("parents" not in t.user_attrs for t in first)


def test_mlflow_has_every_candidate_with_params_metrics_and_parent_tags(finished_search):
    config, run_dir, outcome = finished_search
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test-search")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
    by_trial = {int(r.data.tags["merge3.trial"]): r for r in runs}
    assert sorted(by_trial) == list(range(12))
    assert by_trial[1].info.status == "FAILED"
    assert "injected fault" in by_trial[1].data.tags["merge3.error"]
    for trial, run in by_trial.items():
        if trial == 1:
            continue
        assert run.info.status == "FINISHED"
        assert set(run.data.params) == {"weight/alpha/0", "weight/alpha/1",
                                        "weight/beta/0", "weight/beta/1"}
        for key in ("est/alpha", "est/beta", "stderr/alpha", "stderr/beta",
                    "items_evaluated", "wall_seconds"):
            assert key in run.data.metrics
        assert run.data.metrics["items_evaluated"] == 24  # 12 anchors per task
        parents = json.loads(run.data.tags["merge3.parents"])
        parent_runs = json.loads(run.data.tags["merge3.parent_runs"])
        assert parent_runs == [by_trial[p].info.run_id for p in parents]
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id, "fronts")}
    assert "fronts/lineage.png" in artifacts and "fronts/front_gen000.png" in artifacts
    assert {a.path for a in client.list_artifacts(outcome.parent_run_id, "anchors")} == {
        "anchors/alpha.json", "anchors/beta.json"}


def test_pareto_and_export(finished_search, tmp_path, capsys, search_setting):
    _, run_dir, outcome = finished_search
    assert main(["pareto", str(run_dir), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert {r["trial"] for r in front} == {r.number for r in outcome.front}
    assert main(["pareto", str(run_dir)]) == 0  # the table a terminal user sees
    table = capsys.readouterr().out
    assert "Pareto front" in table and "alpha" in table and "beta" in table
    for row in outcome.front:
        assert f"{100 * row.estimates['alpha']:.1f}±{100 * row.stderr['alpha']:.1f}" in table
    member = front[0]["trial"]
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), "--trial", str(member), str(out), "-q"]) == 0
    manifest = json.loads((out / "merge3_manifest.json").read_text())
    assert manifest["trial"] == member and set(manifest["estimates"]) == {"alpha", "beta"}
    assert str(member) in manifest["lineage"]
    assert (out / "heads" / "alpha.safetensors").exists()  # heads travel with the encoder
    # ... and they are the heads the search scored with: each task's expert head
    experts = {k: str(v) for k, v in search_setting["experts"].items()}
    assert manifest["heads"] == {task: experts[task] for task in ("alpha", "beta")}
    for task in ("alpha", "beta"):
        head = f"heads/{task}.safetensors"
        assert (out / head).read_bytes() == (search_setting["experts"][task] / head).read_bytes()
    materializer = Materializer(
        Checkpoint(search_setting["base"]).state_dict(),
        [Checkpoint(p).state_dict() for p in search_setting["experts"].values()])
    expected = materializer.materialize(manifest["recipe"])
    exported = Checkpoint(out)
    for name in exported.names():
        torch.testing.assert_close(exported.get(name), expected[name], atol=1e-5, rtol=1e-5)


def test_a_worker_process_that_dies_is_replaced(search_setting, ray_local, tmp_path):
    config = search_config(search_setting, strategy={"population": 3, "generations": 1},
                           fitness={"estimator": "full"})
    config["fitness"].pop("item_bank")
    config["workers"]["fault"] = {"mode": "exit", "keys": [0], "attempts": [1]}
    outcome = run_search(parse_config(config), tmp_path / "run", progress=False)
    assert outcome.evaluated == 3 and outcome.failed == 0
    assert outcome.item_evaluations == 3 * 2 * 40  # full evaluation: every item


def test_resume_marks_interrupted_trials_and_refuses_reuse(search_setting, tmp_path):
    config = parse_config(search_config(search_setting))
    study = open_study(name="x", storage=f"sqlite:///{tmp_path / 'o.db'}",
                       sampler=make_sampler("nsga2", population=4, seed=0), objectives=2)
    trial = study.ask()
    trial.suggest_float("w", 0, 1)
    assert fail_interrupted(study) == [0]
    assert study.trials[0].state.name == "FAIL" and study.trials[0].user_attrs["interrupted"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "search_state.json").write_text('{"study": "x"}')
    from merge3.errors import RecipeError

    with pytest.raises(RecipeError, match="already holds a search.*--resume"):
        run_search(config, tmp_path / "run")
    with pytest.raises(RecipeError, match="no search to resume"):
        run_search(config, tmp_path / "empty", resume=True)


def test_front_fully_evaluated_and_banks_recalibrated(finished_search, search_setting):
    from irt import load_bank

    _, run_dir, outcome = finished_search
    lines = (run_dir / "full_evals.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all(set(r["accuracy"]) == {"alpha", "beta"} for r in records)
    assert len({r["trial"] for r in records}) == len(records)  # each member once
    before = load_bank(search_setting["banks"] / "alpha")
    after = load_bank(run_dir / "banks" / "alpha")
    added = [m for m in after.model_ids if m.startswith("trial-")]
    assert len(added) == len(records)
    assert len(after.model_ids) == len(before.model_ids) + len(added)
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test-search")
    run = client.search_runs([experiment.experiment_id],
                             filter_string=f"tags.`merge3.trial` = '{records[0]['trial']}'")[0]
    assert run.data.metrics["full/alpha"] == records[0]["accuracy"]["alpha"]


def test_no_machine_paths_or_secrets_in_mlflow(finished_search, tmp_path):
    """Artifacts, params, tags and names carry no absolute paths (the config has plenty)
    and no value of an environment variable named like a secret (one was planted)."""
    config, run_dir, outcome = finished_search
    machine = str(run_dir.parents[1])
    assert machine in json.dumps(config)  # the config itself is full of them
    texts = mlflow_texts(f"sqlite:///{run_dir / 'mlflow.db'}", "test-search",
                         outcome.parent_run_id, tmp_path)
    assert len(texts) > 12 and any("config" in p.name for p in tmp_path.rglob("*.yaml"))
    assert not [t for t in texts if machine in t]
    secrets = {**secret_values(), PLANTED_SECRET: PLANTED_VALUE}
    assert not [(name, t[:200]) for name, value in secrets.items() for t in texts if value in t]
