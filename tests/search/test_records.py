"""TrialRecord: what a finished Optuna trial tells the rest of the search."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

import search
from search.lineage import ancestry
from search.records import TrialRecord, finished_records, front_of, stored_trial
from search.strategy import fail_interrupted, make_sampler, open_study


@pytest.fixture()
def study(tmp_path):
    """Six trials of a 2-objective study with the lineage sampler: four complete, one
    failed, one cut short by a 'kill' (RUNNING, then marked interrupted)."""
    study = open_study(name="records", storage=f"sqlite:///{tmp_path / 'o.db'}",
                       sampler=make_sampler("nsga2", population=2, seed=0), objectives=2)
    for number in range(5):
        trial = study.ask()
        x = trial.suggest_float("weight/a/0", 0, 1)
        trial.set_user_attr("recipe", {"merge_method": "linear", "x": x})
        trial.set_user_attr("worker", f"host:{number}")
        if number == 3:
            trial.set_user_attr("error", "InjectedFault: boom")
            study.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr("estimates", {"a": x, "b": 1 - x})
        trial.set_user_attr("stderr", {"a": 0.1, "b": 0.2})
        trial.set_user_attr("items_evaluated", 24)
        study.tell(trial, [x, 1 - x])
    study.ask().suggest_float("weight/a/0", 0, 1)
    fail_interrupted(study)
    return study


def test_records_read_every_attribute_back(study):
    records = finished_records(study, ["a", "b"])
    assert [r.number for r in records] == [0, 1, 2, 3, 4]  # the interrupted one is no candidate
    failed = records[3]
    assert not failed.complete and failed.error == "InjectedFault: boom"
    assert failed.estimates == {} and failed.mean_estimate is None
    first = records[0]
    x = first.genome["weight/a/0"]
    assert first.complete and first.estimates == {"a": x, "b": 1 - x}
    assert first.mean_estimate == pytest.approx(0.5)
    assert first.recipe == {"merge_method": "linear", "x": x}
    assert first.worker == "host:0" and first.items_evaluated == 24
    assert first.generation == 0 and first.parents == ()
    children = [r for r in records if r.generation == 1]
    assert children and all(len(r.parents) == 2 for r in children)  # the sampler's lineage


def test_json_round_trip_keeps_the_untyped_keys(study):
    for record in finished_records(study, ["a", "b"]):
        data = json.loads(json.dumps(record.to_json()))
        assert {"trial", "generation", "values", "stderr", "parents", "mean_estimate"} <= set(data)
        assert data["trial"] == record.number and data["values"] == record.estimates
        assert TrialRecord.from_json(data) == record


def test_front_stored_trial_and_ancestry(study):
    records = finished_records(study, ["a", "b"])
    front = front_of(records, ["a", "b"])
    # x and 1 - x: every complete candidate is on the front, the failed one is not
    assert {r.number for r in front} == {r.number for r in records if r.complete}
    assert stored_trial(study, 1).user_attrs["worker"] == "host:1"
    by_number = {r.number: r for r in records}
    child = next(r for r in records if r.parents)
    lineage = ancestry(by_number, [child.number])
    assert lineage[child.number] == list(child.parents)
    assert set(lineage) == {child.number, *child.parents}


def test_the_package_front_resolves_every_name():
    assert "run_search" in search.__all__ and "TrialRecord" in search.__all__
    assert all(getattr(search, name) is not None for name in search.__all__)
    with pytest.raises(AttributeError):
        search.no_such_name  # noqa: B018
    assert optuna.__version__  # the study above was a real Optuna SQLite study
