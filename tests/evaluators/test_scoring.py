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


def test_lm_eval_exact_match_options_by_hand() -> None:
    from evaluators.items import ExactMatchRule
    from evaluators.scoring import lm_eval_exact_match

    plain = ExactMatchRule()
    assert lm_eval_exact_match(" 12", "12", plain) == 0.0  # lm-eval does not strip
    assert lm_eval_exact_match("Paris", "paris", ExactMatchRule(ignore_case=True)) == 1.0
    assert lm_eval_exact_match("1,000.", "1000", ExactMatchRule(
        regexes_to_ignore=(",", r"\.$"))) == 1.0
    assert lm_eval_exact_match("a-b!", "ab", ExactMatchRule(ignore_punctuation=True)) == 1.0
    assert lm_eval_exact_match("x7y", "xy", ExactMatchRule(ignore_numbers=True)) == 1.0


def test_lm_eval_filters_by_hand() -> None:
    from evaluators.items import AnswerFilter, FilterStep
    from evaluators.scoring import apply_filter

    def run(steps, text):
        return apply_filter(AnswerFilter("f", tuple(FilterStep(f, tuple(a.items()))
                                                    for f, a in steps)), text)

    take = ("take_first", {})
    assert run([("regex", {"regex_pattern": r"(\d+)"}), take], "a 12 b 7") == "12"
    assert run([("regex", {"regex_pattern": r"(\d+)", "group_select": -1}), take],
               "a 12 b 7") == "7"
    # groups: the first non-empty one of the match
    assert run([("regex", {"regex_pattern": r"(x)?( \w+)"}), take], "say hi") == "hi"
    assert run([("regex", {"regex_pattern": r"(\d+)"}), take], "none") == "[invalid]"
    assert run([("regex", {"regex_pattern": r"(\d+)", "fallback": "?"}), take], "no") == "?"
    assert run([("remove_whitespace", {}), ("lowercase", {}), take], "  Hi There ") == "hi there"
    # the default pattern is lm-eval's gsm8k one
    assert run([("regex", {}), take], "so #### -1,5.") == "-1,5."


def test_lm_eval_generative_item_scores_every_filter() -> None:
    from evaluators.items import AnswerFilter, ExactMatchRule, FilterStep

    spec = GenerationSpec(max_new_tokens=8, stop=("\n",), scoring="lm_eval", filters=(
        AnswerFilter("strict", (FilterStep("regex", (("regex_pattern", r"A: (\d+)"),)),
                                FilterStep("take_first"))),
        AnswerFilter("loose", (FilterStep("regex", (("regex_pattern", r"(\d+)"),)),
                               FilterStep("take_first")))), match=ExactMatchRule())
    item = Item("t", "0", "generative", "Q:", "7", generation=spec, metric="exact_match")
    result = score_generative(item, " 7 or 8\nA: 7")
    assert result.metrics == {"exact_match": 0.0, "exact_match,strict": 0.0,
                              "exact_match,loose": 1.0}
    assert (result.score, result.prediction) == (0.0, "[invalid]")  # the first filter counts
    bare = Item("t", "1", "generative", "Q:", "7", metric="exact_match",
                generation=GenerationSpec(scoring="lm_eval"))
    assert score_generative(bare, " 7").score == 0.0  # no filter: the raw generation


def test_acc_norm_divides_by_the_choice_text_and_acc_bytes_by_bytes() -> None:
    # choice texts "ab" (2 chars, 2 bytes) and "éé" (2 chars, 4 bytes), delimiter " "
    item = Item(task="t", id="m", format="multiple_choice", prompt="Q:", target=1,
                choices=(" ab", " éé"), choice_texts=("ab", "éé"), metric="acc_bytes")
    result = score_multiple_choice(item, [-3.0, -5.0])  # per char -1.5, -2.5; per byte -1.25
    assert result.metrics == {"acc": 0.0, "acc_norm": 0.0, "acc_bytes": 1.0}
    assert result.score == 1.0 and result.prediction == 1
    # per character of the text: -3/1 < -10/4 picks choice 1; with the delimiter counted
    # (merge3 before), -3/2 > -10/5 would pick choice 0
    norm = Item(task="t", id="n", format="multiple_choice", prompt="Q:", target=1,
                choices=(" a", " abcd"), choice_texts=("a", "abcd"), metric="acc_norm")
    assert score_multiple_choice(norm, [-3.0, -10.0]).metrics["acc_norm"] == 1.0
    assert pick_choices([-3.0, -10.0], (" a", " abcd")) == (0, 0)
