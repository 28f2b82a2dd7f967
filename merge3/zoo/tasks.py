"""The zoo's text-classification tasks, built deterministically from CPython's own text.

Six tasks (``TASKS``); each maps raw records from ``merge3.zoo.sources`` to labelled
examples. ``make_splits`` deduplicates them (case- and space-insensitive), balances the
classes, and assigns every distinct text to exactly one of train / validation / test by
a seeded hash of the text, so no text (and, for ``word_order`` and ``spelling``, no source
sentence) is in two splits.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from merge3.zoo import sources
from merge3.zoo.sources import Record

__all__ = ["TaskDef", "Example", "Splits", "TASKS", "TEST_TASKS", "make_splits", "task_records"]


@dataclass(frozen=True, slots=True)
class TaskDef:
    """A task: its name, class names, a one-line description and its record builder."""

    name: str
    labels: tuple[str, ...]
    description: str
    build: Callable[[Sequence[str]], list[Record]]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text with a stable id."""

    item_id: str
    text: str
    label: int
    source: str


@dataclass(frozen=True, slots=True)
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


# Areas of the standard library (docstring_area): top-level module -> area.
AREAS: dict[str, tuple[str, ...]] = {
    "text": ("re", "string", "textwrap", "difflib", "codecs", "encodings", "unicodedata",
             "locale", "gettext", "html", "shlex", "stringprep", "calendar", "fnmatch"),
    "files": ("os", "pathlib", "shutil", "glob", "tempfile", "zipfile", "tarfile", "gzip",
              "bz2", "lzma", "_pyio", "io", "filecmp", "fileinput", "stat", "genericpath",
              "posixpath", "ntpath", "zipimport", "mimetypes", "netrc", "chunk", "wave"),
    "numbers": ("_pydecimal", "numbers", "statistics", "fractions", "random", "ipaddress",
                "datetime", "_strptime", "colorsys", "heapq", "bisect"),
    "internet": ("email", "http", "urllib", "mailbox", "imaplib", "smtplib", "ftplib",
                 "xmlrpc", "wsgiref", "poplib", "nntplib", "socketserver", "socket", "ssl",
                 "xml"),
    "concurrency": ("asyncio", "multiprocessing", "threading", "concurrent", "queue",
                    "subprocess", "selectors", "sched", "_threading_local"),
    "developer tools": ("unittest", "inspect", "pdb", "bdb", "logging", "doctest", "ast",
                        "dis", "traceback", "pydoc", "trace", "profile", "pstats", "timeit",
                        "cProfile", "tracemalloc", "warnings", "importlib", "pickletools"),
    "gui": ("tkinter", "turtle"),
}

def _all_modules() -> list[str]:
    return sorted({m for group in AREAS.values() for m in group})


def _words_ok(text: str, low: int = 4, high: int = 60) -> bool:
    return low <= len(text.split()) <= high and bool(re.search(r"[a-zA-Z]{3}", text))


def _docstring_area(modules: Sequence[str]) -> list[Record]:
    area_of = {m: area for area, group in AREAS.items() for m in group}
    return [Record(text, area_of[m], src) for m in modules if m in area_of
            for text, _, src in sources.docstrings(m) if _words_ok(text)]


def _docstring_kind(modules: Sequence[str]) -> list[Record]:
    return [Record(text, kind, src) for m in modules
            for text, kind, src in sources.docstrings(m) if _words_ok(text)]


_EXCEPTIONS = ("ValueError", "TypeError")


def _exception_type(modules: Sequence[str]) -> list[Record]:
    out = []
    for m in modules:
        for text, exc, src in sources.raise_messages(m):
            if _words_ok(text, 2, 40) and exc.endswith(("Error", "Exception", "error")):
                out.append(Record(text, exc if exc in _EXCEPTIONS else "other", src))
    return out


def _manual_texts(low: int, high: int) -> list[tuple[str, str]]:
    """(sentence, source) of the reference manual's prose with ``low``–``high`` words."""
    return [(t, f"pydoc_data.topics:{topic}") for t, topic in sources.manual_sentences()
            if _words_ok(t, low, high)]


_SPELLING_WINDOW = 8  # the typo falls in the first words, which the 32-token cut keeps


def _transpose_letters(word: str, rng: random.Random) -> str:
    """Swap two adjacent letters inside ``word`` (its first and last letters stay)."""
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _spelling(modules: Sequence[str]) -> list[Record]:
    """Half the sentences get a typo: two adjacent letters of one word swapped.

    Sentences are source comments and reference-manual prose (``word_order`` reads
    docstrings and the manual); the word is one of the first ``_SPELLING_WINDOW`` words of
    five or more letters, and the choices come from a hash of the text.
    """
    texts = [(t, f"{m}:{s}") for m in modules for t, s in sources.comments(m)
             if _words_ok(t, 6, 40)]
    texts += _manual_texts(6, 40)
    out = []
    for text, src in texts:
        rng = random.Random(_digest(text, seed=1))
        words = text.split()
        candidates = [i for i, w in enumerate(words[:_SPELLING_WINDOW])
                      if w.isalpha() and len(w) >= 5]
        if not candidates:
            continue
        if rng.random() < 0.5:
            i = rng.choice(candidates)
            typo = _transpose_letters(words[i], rng)
            if typo.lower() == words[i].lower():  # e.g. "committee": a swap of equal letters
                continue
            words[i] = typo
            out.append(Record(" ".join(words), "misspelled", src))
        else:
            out.append(Record(text, "correct", src))
    return out


def _swap_adjacent(text: str, rng: random.Random) -> str:
    words = text.split()
    i = rng.randrange(len(words) - 1)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _word_order(modules: Sequence[str]) -> list[Record]:
    """Half the sentences get two adjacent words swapped (chosen by a hash of the text)."""
    out = []
    texts = [(t, s) for m in modules for t, _, s in sources.docstrings(m) if _words_ok(t, 6, 40)]
    texts += _manual_texts(6, 40)
    for text, src in texts:
        rng = random.Random(_digest(text))
        swapped = _swap_adjacent(text, rng)
        if rng.random() < 0.5 and swapped.lower() != text.lower():
            out.append(Record(swapped, "swapped", src))
        else:
            out.append(Record(text, "original", src))
    return out


def _text_source(modules: Sequence[str]) -> list[Record]:
    out = [Record(t, "docstring", s) for m in modules for t, _, s in sources.docstrings(m)
           if _words_ok(t, 5, 40)]
    out += [Record(t, "code comment", f"{m}:{s}") for m in modules
            for t, s in sources.comments(m) if _words_ok(t, 5, 40)]
    out += [Record(t, "reference manual", f"pydoc_data.topics:{topic}")
            for t, topic in sources.manual_sentences() if _words_ok(t, 5, 40)]
    return out


TASKS: dict[str, TaskDef] = {
    t.name: t
    for t in (
        TaskDef("docstring_area", tuple(AREAS),
                "which area of the standard library a docstring documents", _docstring_area),
        TaskDef("docstring_kind", ("module", "class", "function", "method"),
                "whether a docstring documents a module, class, function or method",
                _docstring_kind),
        TaskDef("exception_type", ("ValueError", "TypeError", "other"),
                "which exception class a stdlib error message is raised with", _exception_type),
        TaskDef("spelling", ("correct", "misspelled"),
                "whether a word of a sentence has two adjacent letters swapped", _spelling),
        TaskDef("word_order", ("original", "swapped"),
                "whether two adjacent words of a sentence were swapped", _word_order),
        TaskDef("text_source", ("docstring", "code comment", "reference manual"),
                "whether a text is a docstring, a source comment or reference-manual prose",
                _text_source),
    )
}

# The test-size zoo: the two tasks whose experts gain fastest, over a few modules.
TEST_TASKS = ("exception_type", "word_order")
TEST_MODULES = ("asyncio", "email", "_pydecimal", "logging", "tkinter", "pathlib", "http",
                "unittest", "multiprocessing", "typing", "inspect", "tarfile", "argparse")


def default_modules(size: str) -> tuple[str, ...]:
    """Stdlib modules scanned for a zoo of ``size`` (``test`` reads a handful)."""
    return TEST_MODULES if size == "test" else tuple(_all_modules()) + ("argparse",)


def task_records(name: str, modules: Sequence[str]) -> list[Record]:
    """All labelled records of task ``name`` from ``modules``."""
    return TASKS[name].build(modules)


def _normalise(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _digest(text: str, seed: int = 0) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{text}".encode()).digest()[:8], "big")


def make_splits(
    task: TaskDef,
    records: Iterable[Record],
    *,
    n_train: int,
    n_validation: int,
    n_test: int,
    n_test_extra: int = 0,
    seed: int = 0,
    fit: Callable[[str], str] | None = None,
) -> Splits:
    """Balanced, deduplicated, leak-free splits of ``records``.

    ``fit`` shortens a text to the encoder's length budget (applied before dedup). Texts
    whose normalised form occurs with two labels are dropped. Each class contributes
    equally (as far as it can) to each split: test first, then validation, then train,
    then ``n_test_extra`` more test items from what is left, so a larger test pool leaves
    the train and validation splits as they are.
    """
    by_key: dict[str, set[str]] = defaultdict(set)
    first: dict[str, Record] = {}
    for record in records:
        text = fit(record.text) if fit else record.text
        key = _normalise(text)
        if not key:
            continue
        by_key[key].add(record.label)
        candidate = Record(text, record.label, record.source)
        if key not in first or (text, record.source) < (first[key].text, first[key].source):
            first[key] = candidate  # the same representative whatever the record order
    per_class: dict[str, list[Record]] = defaultdict(list)
    for key, labels in by_key.items():
        if len(labels) == 1:
            per_class[first[key].label].append(first[key])
    for label in per_class:
        per_class[label].sort(key=lambda r: _digest(_normalise(r.text), seed))
    label_index = {name: i for i, name in enumerate(task.labels)}
    taken = dict.fromkeys(per_class, 0)
    out: dict[str, list[Example]] = {"test": []}
    for split, total in (("test", n_test), ("validation", n_validation), ("train", n_train),
                         ("test", n_test_extra)):
        chosen: list[Example] = out[split] if split == "test" else []
        quota = _quotas(total, {c: len(v) - taken[c] for c, v in per_class.items()}, task.labels)
        for label, count in quota.items():
            for record in per_class[label][taken[label]: taken[label] + count]:
                chosen.append(Example(_item_id(task.name, record.text), record.text,
                                      label_index[label], record.source))
            taken[label] += count
        chosen.sort(key=lambda e: e.item_id)
        out[split] = chosen
    return Splits(out["train"], out["validation"], out["test"])


def _quotas(total: int, available: dict[str, int], labels: Sequence[str]) -> dict[str, int]:
    """Split ``total`` over classes as evenly as their availability allows."""
    quota = dict.fromkeys(labels, 0)
    left = total
    open_ = [c for c in labels if available.get(c, 0) > 0]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for c in list(open_):
            add = min(share, available.get(c, 0) - quota[c], left)
            quota[c] += add
            left -= add
            if quota[c] >= available.get(c, 0):
                open_.remove(c)
            if left == 0:
                break
    return quota


def _item_id(task: str, text: str) -> str:
    """A stable id from the task and the text: the same item keeps its id across builds."""
    return f"{task}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
