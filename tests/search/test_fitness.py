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
