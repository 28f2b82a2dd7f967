"""mp-IRT's endpoints: the experts found among an item bank's models."""

from __future__ import annotations

from search.fitness import expert_rows


def test_experts_are_found_by_config_name_or_directory_name():
    bank_models = ["base", "expert-word_order", "text_source", "random-03"]
    experts = {"word_order": "cache/minilm/demo/models/expert-word_order",  # directory name
               "text_source": "elsewhere/ts",  # config name
               "missing": "models/not-in-the-bank"}
    assert expert_rows(bank_models, experts) == [1, 2]
    assert expert_rows(bank_models, {}) == []


def test_a_resumed_fitness_adopts_the_recalibrated_banks(search_setting, tmp_path):
    """adopt_banks swaps in the banks an earlier session refit (the anchors stay), its
    estimates follow the refit bank, and a saved bank over other items is refused."""
    import numpy as np
    import pytest

    from irt import load_bank, save_bank
    from merge3.errors import RecipeError
    from search.fitness import Fitness

    def fresh() -> Fitness:
        return Fitness(["alpha", "beta"], "mp-irt", str(search_setting["banks"]), anchors=8)

    first = fresh()
    bank = first.banks["alpha"]
    items = [i.split("/", 1)[-1] for i in bank.item_ids]
    member = {t: {i: float(n % 3 != 0) for n, i in enumerate(items)} for t in ("alpha",)}
    saved = first.recalibrate({"trial-7": member}, tmp_path / "banks")
    assert list(saved) == ["alpha"] and not list((tmp_path / "banks").glob(".*"))
    answers = {t: dict.fromkeys(items, 1.0) for t in ("alpha", "beta")}

    resumed = fresh()
    before = resumed.score(answers)["alpha"].estimate
    assert resumed.adopt_banks(tmp_path / "banks") == ["alpha"]
    assert "trial-7" in resumed.banks["alpha"].model_ids
    assert resumed.anchor_sets["alpha"].item_ids == first.anchor_sets["alpha"].item_ids
    after = resumed.score(answers)["alpha"].estimate
    assert after == pytest.approx(first.score(answers)["alpha"].estimate)
    assert np.isfinite(before) and np.isfinite(after)

    other = load_bank(search_setting["banks"] / "beta")
    save_bank(other, tmp_path / "wrong" / "alpha")
    with pytest.raises(RecipeError, match="other items"):
        fresh().adopt_banks(tmp_path / "wrong")
