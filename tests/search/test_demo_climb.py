"""The demo's closing comparison (search/climb.py): generation 0's best-mean member vs the
final front's, on true accuracies; and the demo config's sampler and seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from search.climb import CLIMB_FILE, best_mean, compare_climb, search_records
from search.config import parse_config
from search.demo import DEMO_SAMPLER, demo_search_config
from search.records import front_of
from search.run import run_search
from search.testing.setting import search_config


@pytest.fixture(scope="module")
def full_search(search_setting, ray_local, tmp_path_factory):
    """A 3 × 3 search scored on every item (estimator: full): its estimates are the true
    accuracies the comparison must find again in its own evaluation."""
    config = search_config(search_setting, name="climb",
                           fitness={"estimator": "full", "item_bank": None},
                           strategy={"sampler": "ga", "population": 3, "generations": 3})
    parsed = parse_config(config)
    run_dir = tmp_path_factory.mktemp("climb") / "run"
    run_search(parsed, run_dir, progress=False, config_text=yaml.safe_dump(config))
    return parsed, run_dir


def test_the_comparison_scores_both_best_members_on_every_item(full_search):
    config, run_dir = full_search
    records = search_records(config, run_dir)
    assert len(records) == 9
    climb = compare_climb(config, run_dir)
    first = max((r for r in records if r.generation == 0), key=lambda r: r.mean_estimate)
    final = max(front_of(records, ["alpha", "beta"]), key=lambda r: r.mean_estimate)
    assert (climb.first.number, climb.final.number) == (first.number, final.number)
    assert climb.first.generation == 0
    # scored here, in this process, on all 40 items: what the workers' full scores said
    for record, accuracy in ((first, climb.first_accuracy), (final, climb.final_accuracy)):
        assert accuracy == pytest.approx(record.estimates)
    assert climb.final_mean == pytest.approx(np.mean(list(final.estimates.values())))
    assert climb.climbed == (final.generation > 0 and climb.final_mean > climb.first_mean)
    assert climb.normalisers == {"alpha": 1.0, "beta": 1.0}  # no banks: plain accuracy
    saved = json.loads((run_dir / CLIMB_FILE).read_text())
    assert saved["final"]["trial"] == final.number and saved["climbed"] == climb.climbed


def test_a_second_comparison_reuses_the_saved_scores(full_search):
    config, run_dir = full_search
    compare_climb(config, run_dir)
    saved = json.loads((run_dir / CLIMB_FILE).read_text())
    # planted answers no evaluation gives: item k right when k is a multiple of 4 / of 2
    for member in (saved["first"], saved["final"]):
        member["responses"] = {
            task: {item: float(k % step == 0) for k, item in enumerate(sorted(answers))}
            for (task, answers), step in zip(sorted(member["responses"].items()), (4, 2))}
    (run_dir / CLIMB_FILE).write_text(json.dumps(saved))
    again = compare_climb(config, run_dir)
    assert again.first_accuracy == again.final_accuracy == {"alpha": 0.25, "beta": 0.5}
    assert again.interval() == (0.0, 0.0)  # the same answers: no difference to resample
    (run_dir / CLIMB_FILE).unlink()


def test_the_interval_brackets_a_known_difference(full_search):
    config, run_dir = full_search
    climb = compare_climb(config, run_dir)
    low, high = climb.interval()
    assert low <= climb.final_mean - climb.first_mean <= high
    # one member right on every item, the other on half: +0.5 per task; paired differences
    # of 0 or 1 on 2 x 40 items spread the interval by about ±0.11
    from dataclasses import replace

    items = {t: sorted(a) for t, a in climb.first_responses.items()}
    right = {t: dict.fromkeys(ids, 1.0) for t, ids in items.items()}
    half = {t: {i: float(k % 2) for k, i in enumerate(ids)} for t, ids in items.items()}
    known = replace(climb, first_responses=half, final_responses=right)
    assert known.final_mean - known.first_mean == pytest.approx(0.5)
    low, high = known.interval()
    assert 0.3 < low < 0.5 < high < 0.7


def test_best_mean_breaks_ties_by_the_earlier_trial_and_needs_a_candidate(full_search):
    config, run_dir = full_search
    records = search_records(config, run_dir)
    best = best_mean(records)
    assert best.mean_estimate == max(r.mean_estimate for r in records if r.complete)
    with pytest.raises(ValueError, match="no complete candidate"):
        best_mean([])


def test_the_demo_config_takes_the_sampler_and_seed(tmp_path):
    default = demo_search_config(tmp_path, tmp_path, size="test", population=4,
                                 generations=2, anchors=5, workers=1)
    assert default["strategy"]["sampler"] == DEMO_SAMPLER and default["strategy"]["seed"] == 0
    assert default["name"] == "zoo-test-tsv"  # the README's run directory
    other = demo_search_config(tmp_path, tmp_path, size="test", population=4, generations=2,
                               anchors=5, workers=1, sampler="random", seed=3)
    assert other["strategy"] == {**default["strategy"], "sampler": "random", "seed": 3}
    assert other["name"] == "zoo-test-tsv-random-seed3"
