"""The ``scalar`` sampler: one objective, the mean normalised accuracy (search/normalise.py)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from irt import load_bank, save_bank
from search.config import parse_config
from search.normalise import normalised_mean_of, task_normalisers
from search.records import ESTIMATES
from search.run import run_search
from search.strategy import make_sampler, open_study
from search.testing.setting import search_config


@pytest.fixture(scope="module")
def weaker_banks(search_setting, tmp_path_factory):
    """The setting's banks, but the alpha expert's past responses are the base model's:
    the setting's experts score 1.0 on their own tasks (their answers are the labels), so
    this is what makes alpha's normaliser differ from 1."""
    from dataclasses import replace

    root = tmp_path_factory.mktemp("weaker_banks")
    for task in ("alpha", "beta"):
        bank = load_bank(search_setting["banks"] / task)
        if task == "alpha":
            ids = list(bank.model_ids)
            responses = bank.responses.copy()
            responses[ids.index("alpha")] = responses[ids.index("base")]
            bank = replace(bank, responses=responses)
        save_bank(bank, root / task)
    return root


def test_each_task_is_divided_by_its_own_experts_accuracy_on_the_bank(
        search_setting, weaker_banks):
    banks = {t: load_bank(weaker_banks / t) for t in ("alpha", "beta")}
    experts = {k: str(v) for k, v in search_setting["experts"].items()}
    normalisers = task_normalisers(["alpha", "beta"], banks, experts)
    for task, bank in banks.items():
        row = list(bank.model_ids).index(task)  # the expert named after the task
        assert normalisers[task].source == "bank" and normalisers[task].expert == task
        assert normalisers[task].value == pytest.approx(float(np.nanmean(bank.responses[row])))
    # the two experts differ on their tasks: a plain mean would weigh them otherwise
    assert normalisers["alpha"].value < 0.95 and normalisers["beta"].value == 1.0
    # no expert named after the task (or no bank): divided by 1, said so
    renamed = task_normalisers(["alpha", "beta"], banks, {"other": experts["alpha"]})
    assert {n.source for n in renamed.values()} == {"none"}
    assert {n.value for n in renamed.values()} == {1.0}
    assert task_normalisers(["alpha"], {}, experts)["alpha"].value == 1.0


def test_normalised_mean_of():
    assert normalised_mean_of([0.4, 0.9], [0.8, 0.9]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="2 task values but 1"):
        normalised_mean_of([0.4, 0.9], [0.8])


def test_a_scalar_search_tells_the_study_the_mean_normalised_estimate(
        search_setting, weaker_banks, ray_local, tmp_path):
    config = search_config(search_setting, name="scalar",
                           strategy={"sampler": "scalar", "population": 2, "generations": 1})
    config["fitness"]["item_bank"] = str(weaker_banks)
    run_dir = tmp_path / "run"
    run_search(parse_config(config), run_dir, progress=False, config_text=yaml.safe_dump(config))
    banks = {t: load_bank(weaker_banks / t) for t in ("alpha", "beta")}
    normalisers = task_normalisers(["alpha", "beta"], banks, config["experts"])
    assert normalisers["alpha"].value < 0.95
    study = open_study(name="scalar", storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler("scalar", population=2, seed=0), objectives=1)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2
    for trial in complete:
        estimates = trial.user_attrs[ESTIMATES]
        expected = np.mean([estimates[t] / normalisers[t].value for t in ("alpha", "beta")])
        assert trial.value == pytest.approx(expected)
        assert trial.value != pytest.approx(np.mean(list(estimates.values())))
