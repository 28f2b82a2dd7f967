"""Tasks from CPython's text: deterministic, balanced, leak-free; merges in memory."""

from __future__ import annotations

import re

import pytest
import torch

from merge3.zoo import sources
from merge3.zoo.merges import REPORT_METHODS, merge_state, report_spec
from merge3.zoo.tasks import TASKS, make_splits, task_records

MODULES = ("pathlib", "tarfile", "_pydecimal", "typing")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_records_have_known_labels(name: str) -> None:
    records = task_records(name, MODULES)
    assert len(records) > 50
    assert {r.label for r in records} <= set(TASKS[name].labels)
    assert len({r.label for r in records}) >= 2


def test_splits_are_deterministic_balanced_and_disjoint() -> None:
    task = TASKS["word_order"]
    records = task_records(task.name, MODULES)
    first = make_splits(task, records, n_train=80, n_validation=20, n_test=40)
    again = make_splits(task, list(reversed(records)), n_train=80, n_validation=20, n_test=40)
    assert first == again
    keys = [{re.sub(r"\W+", " ", e.text.lower()).strip() for e in getattr(first, s)}
            for s in ("train", "validation", "test")]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    counts = torch.bincount(torch.tensor([e.label for e in first.test]), minlength=2)
    assert len(first.test) == 40 and int(counts.max() - counts.min()) <= 1
    assert len({e.item_id for e in first.test}) == 40


def test_extra_test_items_leave_train_and_validation_as_they_were() -> None:
    task = TASKS["text_source"]
    records = task_records(task.name, MODULES)
    plain = make_splits(task, records, n_train=80, n_validation=20, n_test=40)
    larger = make_splits(task, records, n_train=80, n_validation=20, n_test=40,
                         n_test_extra=30)
    assert larger.train == plain.train and larger.validation == plain.validation
    assert set(plain.test) < set(larger.test) and len(larger.test) == 70
    seen = {e.item_id for e in larger.train + larger.validation}
    assert not seen & {e.item_id for e in larger.test}


def test_word_order_keeps_one_version_per_sentence() -> None:
    records = task_records("word_order", MODULES)
    swapped = [r for r in records if r.label == "swapped"]
    assert 0.35 < len(swapped) / len(records) < 0.65
    # a swap keeps the bag of words: one version per sentence means (almost) unique bags
    bags = {" ".join(sorted(r.text.lower().split())) for r in records}
    texts = {r.text.lower() for r in records}
    assert len(bags) >= 0.99 * len(texts)


def test_raise_messages_and_manual() -> None:
    messages = list(sources.raise_messages("pathlib"))
    assert any(exc == "ValueError" for _, exc, _ in messages)
    sentences = list(sources.manual_sentences())
    assert len(sentences) > 1500 and all(">>>" not in s for s, _ in sentences)


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"encoder.layer.0.attention.self.query.weight": torch.randn(8, 8, generator=g),
            "encoder.layer.0.attention.self.query.bias": torch.randn(8, generator=g),
            "pooler.dense.weight": torch.ones(8, 8),
            "embeddings.position_ids": torch.arange(8)}


@pytest.mark.parametrize("label", sorted(REPORT_METHODS))
def test_merge_state_runs_every_report_method(label: str) -> None:
    base = _state(0)
    experts = {"a": _state(1), "b": _state(2)}
    for expert in experts.values():
        expert["pooler.dense.weight"] = base["pooler.dense.weight"].clone()  # unchanged
        expert["embeddings.position_ids"] = base["embeddings.position_ids"]
    merged = merge_state(report_spec(label, ["a", "b"], 1.0), base, experts)
    assert set(merged) == set(base)
    assert torch.equal(merged["pooler.dense.weight"], base["pooler.dense.weight"])
    name = "encoder.layer.0.attention.self.query.bias"
    if label == "averaging":
        expected = (experts["a"][name] + experts["b"][name]) / 2
        assert torch.allclose(merged[name], expected)
    elif label == "task arithmetic":
        deltas = [experts[k][name] - base[name] for k in ("a", "b")]
        expected = base[name] + deltas[0] + deltas[1]
        assert torch.allclose(merged[name], expected)
    assert all(torch.isfinite(t).all() for t in merged.values() if t.is_floating_point())


def test_the_cli_offers_every_zoo_size() -> None:
    from merge3.zoo.cli import ZOO_SIZES
    from merge3.zoo.config import SIZES

    assert set(ZOO_SIZES) == set(SIZES)
