"""Run-directory ownership and resume checks (search.rundir)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket

import pytest

from merge3.errors import RecipeError
from search.rundir import RunDirBusyError, RunDirLock, check_resume, config_changes


def _hold(run_dir, ready, stop):
    with RunDirLock(run_dir):
        ready.set()
        stop.wait(30)


def test_a_second_owner_is_refused_with_the_owner_named(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    owner = context.Process(target=_hold, args=(tmp_path, ready, stop))
    owner.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunDirBusyError, match=rf"pid {owner.pid} on {socket.gethostname()}"):
            RunDirLock(tmp_path).acquire()
    finally:
        stop.set()
        owner.join(30)
    with RunDirLock(tmp_path) as lock:  # released when the owner exited
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock.path.exists()


def test_a_dead_owners_lock_is_stale_and_taken_over(tmp_path):
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                "start": None, "since": 0}))
    with RunDirLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    (tmp_path / ".lock").write_text("{half-writ")  # a lock cut short by a kill
    with RunDirLock(tmp_path):
        pass


def test_a_live_pid_with_another_start_time_is_a_reused_pid(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                "start": "1", "since": 0}))
    with RunDirLock(tmp_path):
        pass


def test_the_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(ValueError), RunDirLock(tmp_path):
        raise ValueError("boom")
    assert not (tmp_path / ".lock").exists()


STORED = {"method": "tsv_m", "genome": {"alpha": {"low": 0.5, "high": 2.0}},
          "fitness": {"anchors": 30, "estimator": "mp-irt"},
          "strategy": {"generations": 4, "population": 8, "seed": 0},
          "workers": {"count": 2}, "tracking": {"flush_timeout": 60.0}}


def _with(**changes):
    config = json.loads(json.dumps(STORED))
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = config
        for key in path:
            node = node[key]
        node[last] = value
    return config


def test_the_same_config_resumes_and_more_generations_are_allowed(tmp_path):
    assert check_resume(STORED, STORED, tmp_path) == []
    assert check_resume(STORED, _with(strategy__generations=6, workers__count=4), tmp_path) == [
        "strategy.generations", "workers.count"]


@pytest.mark.parametrize(("change", "key"), [
    ({"method": "ties"}, "method"),
    ({"fitness__anchors": 50}, "fitness.anchors"),
    ({"genome__alpha__high": 3.0}, "genome.alpha.high"),
    ({"strategy__population": 10}, "strategy.population"),
])
def test_a_changed_search_is_refused_naming_the_keys(tmp_path, change, key):
    with pytest.raises(RecipeError, match=rf"{key} changed.*new run directory"):
        check_resume(STORED, _with(**change), tmp_path)


def test_fewer_generations_are_refused(tmp_path):
    with pytest.raises(RecipeError, match="fewer generations"):
        check_resume(STORED, _with(strategy__generations=2), tmp_path)


def test_config_changes_sees_added_and_removed_keys():
    assert config_changes({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == ["a.c"]
    assert config_changes({"a": {"b": 1}}, {}) == ["a.b"]


def test_a_key_added_to_the_schema_since_the_run_started_is_not_a_change(tmp_path):
    """A run stored before a config key existed resumes (the key compares as its default);
    a real change is still refused."""
    from search.config import parse_config
    from search.run import _check_resume
    from search.rundir import RunState
    from search.testing.setting import search_config

    setting = {"base": "/b", "experts": {"a": "/a", "b": "/c"}, "tasks": {"a": "/t"},
               "banks": "/k"}
    resolved = parse_config(search_config(setting)).model_dump(mode="json")
    state = RunState(tmp_path)
    state.data["config"] = {k: v for k, v in resolved.items() if k != "expert_storage"}
    _check_resume(state, resolved, tmp_path)  # no refusal
    changed = {**resolved, "method": "ties"}
    with pytest.raises(RecipeError, match="method changed"):
        _check_resume(state, changed, tmp_path)
