"""Scoring functions against hand-computed cases."""

from __future__ import annotations

import pytest

from evaluators.items import GenerationSpec, Item
from evaluators.scoring import (
    cut_at_stop,
    exact_match,
    extract_answer,
    pick_choices,
    score_classification,
    score_generative,
    score_multiple_choice,
)


def test_cut_at_stop_takes_the_earliest_stop() -> None:
    assert cut_at_stop(" 12\nQ: 3", ["\n"]) == " 12"
    assert cut_at_stop("a.b\nc", ["\n", "."]) == "a"
    assert cut_at_stop("abc", []) == "abc"


def test_extract_answer_uses_group_one_whole_match_or_text() -> None:
    assert extract_answer(" the answer is 42.", r"answer is (-?\d+)") == "42"
    assert extract_answer(" 7 apples", r"\d+") == "7"
    assert extract_answer(" no digits", r"(\d+)") is None
    assert extract_answer("  Paris \n", None) == "Paris"


def test_exact_match() -> None:
    assert exact_match(" 12", "12") == 1.0
    assert exact_match("Paris", "paris") == 0.0
    assert exact_match("Paris", "paris", ignore_case=True) == 1.0
    assert exact_match(None, "12") == 0.0


def test_generative_item_score_by_hand() -> None:
    spec = GenerationSpec(max_new_tokens=8, stop=("\n",), answer_regex=r"(-?\d+)")
    item = Item(task="t", id="q1", format="generative", prompt="Q: 5+7=? A:", target="12",
                generation=spec, metric="exact_match")
    right = score_generative(item, " 12\nQ: 1+1=? A: 2")
    assert (right.score, right.prediction, right.details["generation"]) == (1.0, "12", " 12")
    # The regex must not see text after the stop sequence.
    wrong = score_generative(item, " x\n12")
    assert (wrong.score, wrong.prediction) == (0.0, None)


def test_acc_and_acc_norm_by_hand() -> None:
    # log p: -3.0 for " a" (2 chars) and -4.0 for " abcdefghi" (10 chars).
    # acc picks choice 0 (-3 > -4); acc_norm compares -1.5 and -0.4 and picks choice 1.
    assert pick_choices([-3.0, -4.0], [" a", " abcdefghi"]) == (0, 1)
    item = Item(task="t", id="m1", format="multiple_choice", prompt="Q:", target=1,
                choices=(" a", " abcdefghi"), metric="acc_norm")
    result = score_multiple_choice(item, [-3.0, -4.0])
    assert result.metrics == {"acc": 0.0, "acc_norm": 1.0}
    assert (result.score, result.prediction) == (1.0, 1)
    item_acc = Item(task="t", id="m1", format="multiple_choice", prompt="Q:", target=1,
                    choices=(" a", " abcdefghi"), metric="acc")
    assert score_multiple_choice(item_acc, [-3.0, -4.0]).score == 0.0


def test_ties_go_to_the_first_choice() -> None:
    assert pick_choices([-1.0, -1.0], [" x", " y"]) == (0, 0)
    with pytest.raises(ValueError):
        pick_choices([-1.0], [" x", " y"])


def test_classification_score_by_hand() -> None:
    item = Item(task="topic", id="3", format="classification", prompt="poem", target="prose",
                head="topic")
    result = score_classification(item, [0.5, 2.0], ["math", "prose"])
    assert (result.score, result.prediction, result.target) == (1.0, "prose", "prose")
    item_int = Item(task="topic", id="4", format="classification", prompt="sum", target=1,
                    head="topic")
    assert score_classification(item_int, [3.0, -1.0], ["math", "prose"]).score == 0.0
