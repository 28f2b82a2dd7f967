"""Faults a long search must survive: a hung worker, a lost node, a tracking server down."""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.config import parse_config
from search.run import run_search
from search.testing.setting import search_config
from search.tracking import TrackingError
from tests.mlflow_server import start_mlflow, stop_mlflow, wait_for
from tests.search.two_node import run_two_node


def _complete(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                                ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _trial_runs(uri: str, experiment: str) -> dict[int, list]:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], filter_string="tags.`merge3.trial` != ''")
    out: dict[int, list] = {}
    for run in runs:
        out.setdefault(int(run.data.tags["merge3.trial"]), []).append(run)
    return out


def test_a_hung_worker_is_replaced_and_its_candidate_retried(search_setting, ray_local,
                                                            tmp_path):
    config = search_config(search_setting, name="hang",
                           strategy={"population": 3, "generations": 1})
    config["workers"] = {"count": 2, "timeout": 15,
                         "fault": {"mode": "hang", "keys": [0], "attempts": [1]}}
    outcome = run_search(parse_config(config), tmp_path / "run", progress=False)
    assert outcome.evaluated == 3 and outcome.failed == 0
    runs = _trial_runs(outcome.tracking_uri, "hang")
    failed_attempts = runs[0][0].data.tags["merge3.failed_attempts"]
    assert "timed out after 15 s" in failed_attempts  # visible in MLflow
    assert "merge3.failed_attempts" not in runs[1][0].data.tags


def test_losing_a_node_mid_search(search_setting, tmp_path):
    """The worker node is killed (raylet and workers) after 3 candidates; the search
    completes on the head node (in a process of its own: tests/search/two_node.py)."""
    config = search_config(search_setting, name="node-loss",
                           strategy={"population": 4, "generations": 4})
    config["workers"] = {"count": 2, "cpus": 1, "timeout": 60}
    summary = run_two_node("node-loss", config, tmp_path)
    assert not summary["hung"], "the search hung after the node was lost"
    assert summary["error"] is None, summary["error"]
    assert summary["evaluated"] + summary["failed"] == 16
    assert summary["evaluated"] >= 14  # at most the candidates in flight on the lost node fail
    assert summary["alive_after"] == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tracking_server_down_then_back(search_setting, ray_local, tmp_path):
    port = _free_port()
    store = tmp_path / "server.db"
    server = start_mlflow(port, store)
    uri = f"http://127.0.0.1:{port}"
    config = search_config(search_setting, name="flaky-tracking",
                           strategy={"population": 4, "generations": 3},
                           tracking={"uri": uri, "flush_timeout": 120})
    run_dir = tmp_path / "run"
    box: dict = {}

    def search() -> None:
        try:
            box["outcome"] = run_search(parse_config(config), run_dir, progress=False)
        except BaseException as err:  # surfaced by the assertion below
            box["error"] = err

    thread = threading.Thread(target=search)
    try:
        thread.start()
        wait_for(lambda: _complete(run_dir / "optuna.db") >= 2, 300, "2 finished candidates")
        stop_mlflow(server)  # the server dies mid-search ...
        wait_for(lambda: _complete(run_dir / "optuna.db") >= 6 or not thread.is_alive(), 300,
              "the search to go on without tracking")
        server = start_mlflow(port, store)  # ... and comes back
        thread.join(timeout=600)
    finally:
        if thread.is_alive():
            thread.join(timeout=600)
        stop_mlflow(server)
        server = start_mlflow(port, store)
    try:
        assert "error" not in box, box.get("error")
        assert box["outcome"].evaluated == 12
        runs = _trial_runs(uri, "flaky-tracking")
        assert sorted(runs) == list(range(12))  # every candidate caught up
        assert all(len(v) == 1 for v in runs.values())  # none twice
    finally:
        stop_mlflow(server)


def test_tracking_server_never_back_fails_loudly_and_keeps_the_study(search_setting, ray_local,
                                                                    tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    config = search_config(search_setting, name="no-tracking",
                           strategy={"population": 3, "generations": 1},
                           tracking={"uri": uri, "flush_timeout": 2})
    run_dir = tmp_path / "run"
    with pytest.raises(TrackingError, match=r"could not reach .*--resume"):
        run_search(parse_config(config), run_dir, progress=False)
    assert _complete(run_dir / "optuna.db") == 3  # the search's results are safe
