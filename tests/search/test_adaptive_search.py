"""Adaptive fitness: a shared core, then per-candidate Fisher top-ups on the same worker."""

from __future__ import annotations

import numpy as np
import pytest

from merge3.errors import RecipeError
from search.config import AdaptiveSpec, parse_config
from search.fitness import Fitness, strip_task
from search.loop import ITEMS_ASKED
from search.records import finished_records
from search.run import run_search
from search.strategy import make_sampler, open_study
from search.testing.setting import search_config

TASKS = ["alpha", "beta"]


def _fitness(setting: dict, spec: AdaptiveSpec, rescore: int = 0) -> Fitness:
    fitness = Fitness(TASKS, "gmp-irt", str(setting["banks"]), anchors=spec.core)
    fitness.make_adaptive(spec, rescore)
    return fitness


def _answer(fitness: Fitness, row: int):  # noqa: ANN202
    """A bank model's recorded answers, keyed like a worker's responses."""
    def respond(items: dict[str, list[str]]) -> dict[str, dict[str, float]]:
        out = {}
        for task, ids in items.items():
            bank = fitness.banks[task]
            lookup = {strip_task(task, i): k for k, i in enumerate(bank.item_ids)}
            out[task] = {i: float(bank.responses[row, lookup[i]]) for i in ids}
        return out
    return respond


def test_fitness_asks_the_core_then_top_ups_until_done(search_setting) -> None:  # noqa: ANN001
    spec = AdaptiveSpec(core=6, budget=14, batch=4, se_target=1e-6)
    fitness = _fitness(search_setting, spec, rescore=3)
    core = fitness.items_for_candidate()
    assert {t: len(v) for t, v in core.items()} == {"alpha": 6, "beta": 6}
    respond = _answer(fitness, row=3)
    responses = respond(core)
    rounds = 0
    while more := fitness.next_items(responses):
        rounds += 1
        for task, ids in more.items():
            assert len(ids) <= 4 and not set(ids) & set(responses[task])
            responses[task].update(respond({task: ids})[task])
    # a 1e-6 s.e. is never reached: every task runs to its budget, in two batches of 4
    assert rounds == 2 and {t: len(v) for t, v in responses.items()} == {"alpha": 14,
                                                                         "beta": 14}
    scores = fitness.score(responses)
    assert {s.items for s in scores.values()} == {14}
    assert all(0 <= s.estimate <= 1 and s.stderr > 0 for s in scores.values())
    # a close call's re-scoring: 3 more items per task, by information, none asked before
    extra = fitness.rescore_items_for(responses)
    assert {t: len(v) for t, v in extra.items()} == {"alpha": 3, "beta": 3}
    assert all(not set(v) & set(responses[t]) for t, v in extra.items())
    # flagged items are never asked
    for task in TASKS:
        flagged = {strip_task(task, i) for i in fitness.banks[task].flagged}
        assert not flagged & set(responses[task])


def test_a_loose_se_target_stops_at_the_core(search_setting) -> None:  # noqa: ANN001
    fitness = _fitness(search_setting, AdaptiveSpec(core=6, budget=14, batch=4, se_target=0.9))
    responses = _answer(fitness, row=0)(fitness.items_for_candidate())
    assert fitness.next_items(responses) == {}


def test_config_checks_the_adaptive_option() -> None:
    def config(fitness: dict) -> dict:
        return {"experts": {"a": "x"}, "genome": {}, "tasks": {"alpha": "t.yaml"},
                "fitness": {"item_bank": "banks", **fitness}}

    parsed = parse_config(config({"adaptive": {"core": 6, "budget": 14}}))
    assert parsed.fitness.anchors == 6 and parsed.fitness.adaptive.batch == 5
    assert parse_config(config({})).fitness.adaptive is None  # absent: static anchors
    with pytest.raises(RecipeError, match="disagree"):
        parse_config(config({"anchors": 8, "adaptive": {"core": 6}}))
    with pytest.raises(RecipeError, match="below adaptive.core"):
        parse_config(config({"adaptive": {"core": 6, "budget": 4}}))
    with pytest.raises(RecipeError, match="Did you mean 'budget'"):
        parse_config(config({"adaptive": {"core": 6, "budgets": 4}}))
    with pytest.raises(RecipeError, match="IRT estimator"):
        parse_config(config({"estimator": "full", "adaptive": {"core": 6}}))


def test_adaptive_search_shares_the_core_and_stays_within_budget(search_setting, ray_local,
                                                                 tmp_path) -> None:  # noqa: ANN001
    config = search_config(search_setting, name="adaptive",
                           strategy={"population": 4, "generations": 2})
    del config["fitness"]["anchors"]
    config["fitness"].update(adaptive={"core": 6, "budget": 12, "batch": 3, "se_target": 0.05},
                             rescore_items=4, rescore_margin=3.0)
    run_dir = tmp_path / "run"
    outcome = run_search(parse_config(config), run_dir, progress=False)
    assert outcome.evaluated + outcome.failed == 8
    study = open_study(name="adaptive", storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler("nsga2", population=4, seed=0), objectives=2)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    records = [r for r in finished_records(study, TASKS) if r.complete]
    assert len(records) >= 6
    cores, counts = set(), []
    for record in records:
        asked = trials[record.number].user_attrs[ITEMS_ASKED]
        rescored = bool(trials[record.number].user_attrs.get("rescored"))
        for task in TASKS:
            items = asked[task]
            assert len(set(items)) == len(items)  # nothing asked twice
            cores.add((task, tuple(items[:6])))
            assert 6 <= len(items) <= 12 + (4 if rescored else 0)
            counts.append(len(items))
        assert record.items_evaluated == sum(len(asked[t]) for t in TASKS)
    assert len(cores) == len(TASKS)  # every candidate answered the same core, first
    assert outcome.item_evaluations == sum(r.items_evaluated for r in records)
    # on this setting the s.e. target stops some tests before the budget and not others,
    # and some candidates are close calls, re-scored by a Fisher top-up beyond the budget
    assert min(counts) < 12 and max(counts) > 6
    assert any(trials[r.number].user_attrs.get("rescored") for r in records)
    assert np.isfinite([r.estimates[t] for r in records for t in TASKS]).all()
