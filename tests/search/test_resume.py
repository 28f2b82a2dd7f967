"""`kill -9` of a running `merge3 search`, then `--resume`: no finished evaluation is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import yaml
from mlflow.tracking import MlflowClient

from tests.search.test_search import search_config


def _complete(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                                ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _run(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "merge3.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


def test_kill_9_then_resume_loses_nothing(search_setting, ray_local, tmp_path):
    address = ray_local.get_runtime_context().gcs_address
    config = search_config(search_setting, name="killed",
                           strategy={"population": 4, "generations": 4})
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    args = ["search", str(config_path), "--run-dir", str(run_dir), "--address", address, "-q"]
    driver = _run(args)
    deadline = time.monotonic() + 300
    while _complete(run_dir / "optuna.db") < 6:
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, "search made no progress"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = _complete(run_dir / "optuna.db")
    assert 6 <= done_before < 16

    resumed = _run([*args, "--resume"])
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
