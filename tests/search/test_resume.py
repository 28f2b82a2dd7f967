"""`kill -9` of a running `merge3 search`, then `--resume`: no finished evaluation is lost.

One kill comes from outside at a moment the test picks by watching the study; the
others are the driver killing itself at seeded random points (search/faults.py's
``MERGE3_FAULT_KILL_AT``): during evaluation, during MLflow logging, at a generation
boundary. After those, the resumed search must hold exactly the candidates (genomes,
parents, estimates, front) of the search run without a kill. The helpers are shared
with benchmarks/reliability/report.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter

import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.config import parse_config
from search.run import run_search
from search.testing.kills import driver, front_places, kill_and_resume, placed, tally
from search.testing.setting import search_config


def _complete(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                                ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_resume_loses_nothing(search_setting, ray_local, tmp_path):
    address = ray_local.get_runtime_context().gcs_address
    config = search_config(search_setting, name="killed",
                           strategy={"population": 4, "generations": 4})
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    args = ["search", str(config_path), "--run-dir", str(run_dir), "--address", address, "-q"]
    process = driver(args)
    deadline = time.monotonic() + 300
    while _complete(run_dir / "optuna.db") < 6:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "search made no progress"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = _complete(run_dir / "optuna.db")
    assert 6 <= done_before < 16

    resumed = driver([*args, "--resume"])
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    with sqlite3.connect(run_dir / "optuna.db") as conn:
        states = dict(conn.execute("SELECT number, state FROM trials").fetchall())
    counts = Counter(states.values())
    assert counts["COMPLETE"] == 16  # the whole budget, finished work kept
    assert counts["COMPLETE"] + counts["FAIL"] == len(states)
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("killed")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`merge3.trial` != ''")
    finished = Counter(int(r.data.tags["merge3.trial"]) for r in runs
                       if r.info.status in ("FINISHED", "FAILED"))
    assert all(n == 1 for n in finished.values()), "a candidate was logged twice"
    completed = {n for n, s in states.items() if s == "COMPLETE"}
    assert completed <= set(finished)
    assert all(r.info.status != "RUNNING" for r in runs)


POPULATION, GENERATIONS = 4, 3


@pytest.fixture(scope="module")
def uninterrupted(search_setting, ray_local, tmp_path_factory):
    """The kill-points search run once without a kill: its config and run directory."""
    config = search_config(search_setting, name="kill-points",
                           strategy={"population": POPULATION, "generations": GENERATIONS})
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    outcome = run_search(parse_config(config), run_dir, progress=False)
    assert outcome.evaluated + outcome.failed == POPULATION * GENERATIONS
    return config, run_dir


@pytest.mark.parametrize("seed", [9, 23])
def test_killed_at_random_points_resume_matches_an_uninterrupted_run(uninterrupted, ray_local,
                                                                     tmp_path, seed):
    """Three self-kills (evaluation, MLflow logging, generation boundary; in a seeded
    order at seeded counts), each followed by --resume: every (generation, slot) holds the
    same genome, parents and estimates as in the same search run without a kill, so the
    front is the same; one MLflow run per finished candidate."""
    import random

    config, reference_dir = uninterrupted
    budget = POPULATION * GENERATIONS
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "killed"
    address = ray_local.get_runtime_context().gcs_address
    args = ["search", str(config_path), "--run-dir", str(run_dir), "--address", address, "-q"]
    stages = random.Random(seed).sample(["evaluate", "log", "generation"], 3)
    kills, final = kill_and_resume(args, run_dir, study="kill-points", budget=budget,
                                   population=POPULATION, stages=stages, seed=seed)
    assert [k.point.split(":")[0] for k in kills] == stages, [
        (k.point, k.finished_before, k.finished_after, round(k.seconds)) for k in kills]
    assert all(k.killed for k in kills), [(k.point, k.output[-3000:]) for k in kills]
    assert final.returncode == 0, final.stdout[-3000:]
    print("kills:", [(k.point, k.finished_before, k.finished_after, round(k.seconds))
                     for k in kills])
    # something was cut short and asked again, so the comparison below means something
    got = tally(run_dir, "kill-points", "kill-points")
    assert got.interrupted >= 1

    expected_trials = placed(reference_dir, "kill-points")
    got_trials = placed(run_dir, "kill-points")
    assert sorted(expected_trials) == [(g, s) for g in range(GENERATIONS)
                                       for s in range(POPULATION)]
    assert got_trials == expected_trials  # genomes, parents' places, estimates: exactly
    expected_front = front_places(expected_trials)
    assert expected_front and front_places(got_trials) == expected_front

    expected = tally(reference_dir, "kill-points", "kill-points")
    assert got.finished == expected.finished == budget
    assert got.item_evaluations == expected.item_evaluations > 0
    assert got.running == 0
    # MLflow: one run per finished candidate, none for the candidates a kill cut short
    assert sorted(got.runs_per_trial) == sorted(
        t.number for t in _finished_trials(run_dir, "kill-points"))
    assert set(got.runs_per_trial.values()) == {1}
    assert set(got.run_states) <= {"FINISHED", "FAILED"}
    assert got.reconciled == 1  # the run the logging kill cut short, completed on resume
    # the generation-boundary kill's front is logged on resume, like every other one
    fronts = sorted(p.name for p in (run_dir / "fronts").glob("front_gen*.md"))
    assert fronts == [f"front_gen{g:03d}.md" for g in range(GENERATIONS)]


def _finished_trials(run_dir, study):
    from search.testing.kills import load_trials

    return [t for t in load_trials(run_dir, study)
            if t.state.name in ("COMPLETE", "FAIL") and not t.user_attrs.get("interrupted")]


def test_killed_before_a_bank_refit_refits_with_what_was_evaluated(
        search_setting, ray_local, tmp_path):
    """With full_every: 1 and recalibration, a kill between the first full evaluation of
    the front and the bank refit: on resume, the members evaluated before the kill (kept
    with their responses in full_evals.jsonl) are not evaluated again but do go into the
    refit, so the final banks hold every fully evaluated member once."""
    from irt import load_bank

    config = search_config(search_setting, name="refit-kill",
                           strategy={"population": 4, "generations": 3},
                           fitness={"full_every": 1})
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    address = ray_local.get_runtime_context().gcs_address
    args = ["search", str(config_path), "--run-dir", str(run_dir), "--address", address, "-q"]
    killed = driver(args, kill_at="refit:1")
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    logged = [yaml.safe_load(line) for line in
              (run_dir / "full_evals.jsonl").read_text().splitlines()]
    assert logged and {r["generation"] for r in logged} == {0}
    assert not (run_dir / "banks" / "alpha").exists()  # killed before the refit

    resumed = driver([*args, "--resume"])
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    again = [yaml.safe_load(line) for line in
             (run_dir / "full_evals.jsonl").read_text().splitlines()]
    assert again[:len(logged)] == logged  # nothing evaluated twice
    assert len({r["trial"] for r in again}) == len(again)
    original = load_bank(search_setting["banks"] / "alpha").model_ids
    for task in ("alpha", "beta"):
        final = load_bank(run_dir / "banks" / task).model_ids
        added = [m for m in final if m not in original]
        assert sorted(added) == sorted(f"trial-{r['trial']}" for r in again)
        assert len(final) == len(original) + len(added)
