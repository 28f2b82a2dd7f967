"""Pure scoring functions: answer extraction, exact match, acc / acc_norm, classification.

Backends produce raw outputs (generated text, log-likelihoods, logits); these functions
turn them into ``ItemResult`` s, identically for every backend.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from evaluators.items import Item, ItemResult

__all__ = [
    "cut_at_stop",
    "extract_answer",
    "exact_match",
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


def pick_choices(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(acc choice, acc_norm choice): argmax of log p(choice | context), and of the same
    divided by the choice's length in characters (lm-evaluation-harness' ``acc_norm``).
    Ties go to the first choice."""
    if len(loglikelihoods) != len(choices) or not choices:
        raise ValueError("one log-likelihood per choice is needed")
    best = max(range(len(choices)), key=lambda i: (loglikelihoods[i], -i))
    normed = [ll / max(len(c), 1) for ll, c in zip(loglikelihoods, choices)]
    best_norm = max(range(len(choices)), key=lambda i: (normed[i], -i))
    return best, best_norm


def score_generative(item: Item, generation: str) -> ItemResult:
    """Score one generative item from its raw greedy generation."""
    spec = item.generation
    assert spec is not None, "generative items carry a GenerationSpec"
    answer_text = cut_at_stop(generation, spec.stop)
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


def score_multiple_choice(item: Item, loglikelihoods: Sequence[float]) -> ItemResult:
    """Score one multiple-choice item from the log-likelihood of each choice."""
    best, best_norm = pick_choices(loglikelihoods, item.choices)
    metrics = {"acc": float(best == item.target), "acc_norm": float(best_norm == item.target)}
    chosen = best_norm if item.metric == "acc_norm" else best
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
