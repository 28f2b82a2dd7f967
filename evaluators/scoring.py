"""Pure scoring functions: answer extraction, exact match, acc / acc_norm, classification.

Backends produce raw outputs (generated text, log-likelihoods, logits); these functions
turn them into ``ItemResult`` s, identically for every backend. Multiple-choice metrics
and, for tasks read from lm-eval YAMLs, filters and ``exact_match`` follow
lm-evaluation-harness 0.4.13 (``ConfigurableTask.process_results``, ``filters/``,
``api/metrics.exact_match_hf_evaluate``), restated here.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

from evaluators.items import AnswerFilter, ExactMatchRule, Item, ItemResult

__all__ = [
    "cut_at_stop",
    "extract_answer",
    "exact_match",
    "lm_eval_exact_match",
    "apply_filter",
    "pick_choices",
    "score_generative",
    "score_multiple_choice",
    "score_classification",
]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest occurrence of any stop sequence."""
    cut = len(text)
    for s in stop:
        if s:
            at = text.find(s)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


def extract_answer(text: str, answer_regex: str | None) -> str | None:
    """The answer in a generation: the regex's first match (its group 1 if it has groups),
    or the stripped text when there is no regex; ``None`` when the regex does not match."""
    if answer_regex is None:
        return text.strip()
    match = re.search(answer_regex, text)
    if match is None:
        return None
    return (match.group(1) if match.re.groups else match.group(0)).strip()


def exact_match(prediction: str | None, target: str, ignore_case: bool = False) -> float:
    """1.0 when the stripped prediction equals the stripped target, else 0.0."""
    if prediction is None:
        return 0.0
    a, b = prediction.strip(), target.strip()
    if ignore_case:
        a, b = a.casefold(), b.casefold()
    return float(a == b)


def lm_eval_exact_match(prediction: str, target: str, rule: ExactMatchRule) -> float:
    """lm-eval 0.4's ``exact_match`` of one prediction: each regex of
    ``regexes_to_ignore`` removed from both, then lower case, punctuation and digits
    dropped as asked, then numpy string equality (as ``exact_match_hf_evaluate``)."""
    import numpy as np

    predictions, references = np.asarray([prediction]), np.asarray([target])
    for regex in rule.regexes_to_ignore:
        predictions = np.array([re.sub(regex, "", x) for x in predictions])
        references = np.array([re.sub(regex, "", x) for x in references])
    if rule.ignore_case:
        predictions, references = np.char.lower(predictions), np.char.lower(references)
    for flag, chars in ((rule.ignore_punctuation, string.punctuation),
                        (rule.ignore_numbers, string.digits)):
        if flag:
            table = chars.maketrans("", "", chars)
            predictions = np.char.translate(predictions, table=table)
            references = np.char.translate(references, table=table)
    return float(np.mean(predictions == references))


def _regex_step(text: str, regex_pattern: str = r"#### (\-?[0-9\.\,]+)",
                group_select: int = 0, fallback: str = "[invalid]") -> str:
    """lm-eval's ``regex`` filter: the ``group_select``-th of ``re.findall``'s matches (a
    match with groups: its first non-empty group), stripped; ``fallback`` if none."""
    matches = re.findall(regex_pattern, text)
    if not matches:
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), fallback)
    return match.strip()


_STEPS = {
    "regex": _regex_step,
    "remove_whitespace": lambda text: text.strip(),
    "lowercase": lambda text: text.lower(),
    "uppercase": lambda text: text.upper(),
    "take_first": lambda text: text,  # one response per item: the first is the only one
}


def apply_filter(answer_filter: AnswerFilter, generation: str) -> str:
    """Run one lm-eval filter pipeline on a generation (its steps in order)."""
    text = generation
    for step in answer_filter.steps:
        text = _STEPS[step.function](text, **dict(step.args))
    return text


def pick_choices(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(acc choice, acc_norm choice): argmax of log p(choice | context), and of the same
    divided by the choice's length in characters (lm-evaluation-harness' ``acc_norm``:
    ``len`` of the choice as the task lists it, without the target delimiter).
    Ties go to the first choice (``np.argmax``)."""
    if len(loglikelihoods) != len(choices) or not choices:
        raise ValueError("one log-likelihood per choice is needed")
    best = max(range(len(choices)), key=lambda i: (loglikelihoods[i], -i))
    normed = [ll / max(len(c), 1) for ll, c in zip(loglikelihoods, choices)]
    best_norm = max(range(len(choices)), key=lambda i: (normed[i], -i))
    return best, best_norm


def _pick_by_bytes(loglikelihoods: Sequence[float], choices: Sequence[str]) -> int:
    """lm-eval's ``acc_bytes`` choice: log-likelihood per UTF-8 byte of the choice."""
    normed = [ll / max(len(c.encode("utf-8")), 1) for ll, c in zip(loglikelihoods, choices)]
    return max(range(len(choices)), key=lambda i: (normed[i], -i))


def score_generative(item: Item, generation: str) -> ItemResult:
    """Score one generative item from its raw greedy generation."""
    spec = item.generation
    assert spec is not None, "generative items carry a GenerationSpec"
    answer_text = cut_at_stop(generation, spec.stop)
    if spec.scoring == "lm_eval":
        return _score_lm_eval_generative(item, answer_text)
    prediction = extract_answer(answer_text, spec.answer_regex)
    score = exact_match(prediction, str(item.target), spec.ignore_case)
    return ItemResult(
        task=item.task,
        item=item.id,
        score=score,
        prediction=prediction,
        target=item.target,
        metrics={"exact_match": score},
        details={"generation": answer_text},
    )


def _score_lm_eval_generative(item: Item, answer_text: str) -> ItemResult:
    """lm-eval scoring: every filter pipeline's answer, exact match under the task's
    rule; the first pipeline gives the item's score (none: the raw generation)."""
    spec = item.generation
    assert spec is not None
    target = str(item.target)
    answers = {f.name: apply_filter(f, answer_text) for f in spec.filters} or {
        "none": answer_text}
    scores = {name: lm_eval_exact_match(a, target, spec.match) for name, a in answers.items()}
    main = next(iter(answers))
    metrics = {"exact_match": scores[main]}
    if len(answers) > 1:
        metrics.update({f"exact_match,{name}": v for name, v in scores.items()})
    return ItemResult(
        task=item.task,
        item=item.id,
        score=scores[main],
        prediction=answers[main],
        target=item.target,
        metrics=metrics,
        details={"generation": answer_text, "filter": main, "answers": answers},
    )


def score_multiple_choice(item: Item, loglikelihoods: Sequence[float]) -> ItemResult:
    """Score one multiple-choice item from the log-likelihood of each choice."""
    texts = item.choice_texts or item.choices
    best, best_norm = pick_choices(loglikelihoods, texts)
    metrics = {"acc": float(best == item.target), "acc_norm": float(best_norm == item.target)}
    chosen = {"acc": best, "acc_norm": best_norm}.get(item.metric, best)
    if item.metric == "acc_bytes":
        chosen = _pick_by_bytes(loglikelihoods, texts)
        metrics["acc_bytes"] = float(chosen == item.target)
    return ItemResult(
        task=item.task,
        item=item.id,
        score=metrics[item.metric],
        prediction=chosen,
        target=item.target,
        metrics=metrics,
        details={"loglikelihoods": [float(x) for x in loglikelihoods]},
    )


def score_classification(item: Item, logits: Sequence[float], labels: Sequence[str]) -> ItemResult:
    """Score one classification item from its head's logits (argmax; ties to the first)."""
    if any(math.isnan(x) for x in logits):
        prediction = -1
    else:
        prediction = max(range(len(logits)), key=lambda i: (logits[i], -i))
    target = item.target
    if isinstance(target, str):
        target = list(labels).index(target) if target in labels else -1
    score = float(prediction == target)
    return ItemResult(
        task=item.task,
        item=item.id,
        score=score,
        prediction=labels[prediction] if 0 <= prediction < len(labels) else prediction,
        target=labels[target] if 0 <= target < len(labels) else target,
        metrics={"acc": score},
        details={"logits": [float(x) for x in logits]},
    )
