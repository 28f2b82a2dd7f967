"""Close calls are re-scored on more items before they are told."""

from __future__ import annotations

from search.config import parse_config
from search.records import finished_records
from search.run import run_search
from search.strategy import make_sampler, open_study
from search.testing.setting import search_config


def test_close_calls_get_more_items_and_the_rest_do_not(search_setting, ray_local, tmp_path):
    config = search_config(search_setting, name="rescore",
                           strategy={"population": 4, "generations": 2})
    config["fitness"].update(anchors=8, rescore_items=10, rescore_margin=3.0)
    run_dir = tmp_path / "run"
    outcome = run_search(parse_config(config), run_dir, progress=False)
    assert outcome.evaluated + outcome.failed == 8
    study = open_study(name="rescore", storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler("nsga2", population=4, seed=0), objectives=2)
    tasks = list(config["tasks"])
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    records = [r for r in finished_records(study, tasks) if r.complete]
    rescored = [r for r in records if trials[r.number].user_attrs.get("rescored")]
    plain = [r for r in records if not trials[r.number].user_attrs.get("rescored")]
    assert {r.number for r in rescored} == {r.number for r in records if r.rescored}
    assert rescored and plain  # with a 3-s.e. margin some candidates are close calls
    assert {r.items_evaluated for r in plain} == {8 * len(tasks)}
    assert {r.items_evaluated for r in rescored} == {18 * len(tasks)}
    # a re-scored estimate rests on more answers: its error is smaller than an anchor-only one
    anchors_only = max(r.stderr[t] for r in plain for t in tasks)
    assert min(r.stderr[t] for r in rescored for t in tasks) < anchors_only
    assert outcome.item_evaluations == sum(r.items_evaluated for r in records)
