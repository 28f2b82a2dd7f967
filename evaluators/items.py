"""Items (what a backend scores) and item results (what it returns), as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Format",
    "FilterStep",
    "AnswerFilter",
    "ExactMatchRule",
    "GenerationSpec",
    "Item",
    "ItemResult",
    "FORMATS",
]

Format = Literal["generative", "multiple_choice", "classification"]
FORMATS: tuple[str, ...] = ("generative", "multiple_choice", "classification")


@dataclass(frozen=True, slots=True)
class FilterStep:
    """One step of an lm-evaluation-harness filter pipeline (``regex``, ``take_first``,
    ``remove_whitespace``, ``lowercase``, ``uppercase``) with its arguments."""

    function: str
    args: tuple[tuple[str, str | int], ...] = ()


@dataclass(frozen=True, slots=True)
class AnswerFilter:
    """A named filter pipeline (an lm-eval ``filter_list`` entry): generation -> answer."""

    name: str
    steps: tuple[FilterStep, ...] = ()


@dataclass(frozen=True, slots=True)
class ExactMatchRule:
    """lm-eval's ``exact_match`` options: regexes removed, case, punctuation, digits."""

    regexes_to_ignore: tuple[str, ...] = ()
    ignore_case: bool = False
    ignore_punctuation: bool = False
    ignore_numbers: bool = False


@dataclass(frozen=True, slots=True)
class GenerationSpec:
    """How a generative item is answered and read: shared by all items of a task.

    ``scoring="merge3"``: the answer is ``answer_regex``'s first match (or the stripped
    text) and exact match compares stripped strings. ``scoring="lm_eval"`` (tasks from
    lm-eval YAMLs): the answer goes through ``filters`` (the first is the item's score;
    none: the raw generation) and ``match`` compares as lm-eval 0.4's ``exact_match``.
    """

    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()  # the answer is cut at the first of these
    answer_regex: str | None = None  # first match (group 1 if any) is the prediction
    ignore_case: bool = False
    scoring: Literal["merge3", "lm_eval"] = "merge3"
    filters: tuple[AnswerFilter, ...] = ()
    match: ExactMatchRule = field(default_factory=ExactMatchRule)


@dataclass(frozen=True, slots=True)
class Item:
    """One scorable item, fully rendered: backends need nothing else.

    - generative: ``prompt`` is the context (few-shot included); ``target`` the answer
      string; ``generation`` how to generate and extract.
    - multiple_choice: ``prompt`` is the context; ``choices`` the continuations (target
      delimiter included, e.g. ``" 7"``); ``target`` the index of the correct one;
      ``choice_texts`` the choices as the task lists them (``"7"``): ``acc_norm`` divides
      by their length, as lm-evaluation-harness does (empty: ``choices`` are used).
    - classification: ``prompt`` is the encoder's input text; ``target`` the class index;
      ``head`` the name of the task head (``MODEL_DIR/heads/<head>.safetensors``).
    """

    task: str
    id: str
    format: Format
    prompt: str
    target: Any
    choices: tuple[str, ...] = ()
    generation: GenerationSpec | None = None
    head: str | None = None
    metric: str = "acc"
    choice_texts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The score of one item: ``score`` in [0, 1] under the task's metric, plus details.

    ``metrics`` holds every metric computed for the item (e.g. ``acc`` and ``acc_norm``),
    ``details`` backend outputs worth logging (log-likelihoods, raw generation).
    """

    task: str
    item: str
    score: float
    prediction: Any = None
    target: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
