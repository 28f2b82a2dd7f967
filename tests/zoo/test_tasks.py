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
    from merge3.zoo.build_config import SIZES
    from merge3.zoo.cli import ZOO_SIZES

    assert set(ZOO_SIZES) == set(SIZES)


def test_spelling_typos_are_one_adjacent_transposition_early_in_a_sentence() -> None:
    from merge3.zoo.tasks import _SPELLING_WINDOW, _words_ok

    records = task_records("spelling", MODULES)
    misspelled = [r for r in records if r.label == "misspelled"]
    assert 0.35 < len(misspelled) / len(records) < 0.65
    originals = [t for m in MODULES for t, _ in sources.comments(m) if _words_ok(t, 6, 40)]
    originals += [t for t, _ in sources.manual_sentences() if _words_ok(t, 6, 40)]
    masked: dict[tuple, set[str]] = {}
    for text in originals:
        words = text.split()
        for i in range(min(_SPELLING_WINDOW, len(words))):
            masked.setdefault((i, *words[:i], "*", *words[i + 1:]), set()).add(words[i])
    assert {r.text for r in records if r.label == "correct"} <= set(originals)
    for record in misspelled:
        words = record.text.split()
        found = [(i, word) for i in range(min(_SPELLING_WINDOW, len(words)))
                 for word in masked.get((i, *words[:i], "*", *words[i + 1:]), ())
                 if word != words[i] and sorted(word) == sorted(words[i])]
        assert found, record.text  # one original sentence, one word's letters reordered
        i, word = found[0]
        typo = words[i]
        diff = [j for j, (a, b) in enumerate(zip(word, typo)) if a != b]
        assert len(word) == len(typo) >= 5 and len(diff) == 2 and diff[1] == diff[0] + 1
        assert typo[diff[0]] == word[diff[1]] and typo[diff[1]] == word[diff[0]]
        assert diff[0] > 0 and diff[1] < len(word) - 1  # first and last letters stay


def _tiny_bert() -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    return BertModel(config).train()


@pytest.mark.parametrize("train_embeddings", [False, True])
def test_finetune_freezes_word_embeddings_unless_asked(train_embeddings: bool) -> None:
    from merge3.zoo.finetune import FinetuneConfig, LinearProbe, finetune

    model = _tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = [[1, 5 + i % 7, 9, 2] for i in range(16)]
    head = LinearProbe(torch.zeros(2, 16), torch.zeros(2))
    cfg = FinetuneConfig(steps=3, batch_size=8, lr=1e-2, head_lr=1e-2,
                         train_word_embeddings=train_embeddings)
    finetune(model, head, ids, [i % 2 for i in range(16)], cfg)
    after = model.state_dict()
    name = "embeddings.word_embeddings.weight"
    assert torch.equal(after[name], before[name]) is not train_embeddings
    assert not torch.equal(after["encoder.layer.0.attention.self.query.weight"],
                           before["encoder.layer.0.attention.self.query.weight"])
    assert model.get_input_embeddings().weight.requires_grad  # restored afterwards


def test_per_task_finetuning_changes_and_seeds() -> None:
    from dataclasses import replace

    from merge3.zoo.build_config import zoo_config

    demo = zoo_config("demo")
    cfg = replace(demo, finetune_by_task={"word_order": {"lr": 3e-4, "steps": 120}})
    changed, plain = cfg.finetune_for("word_order", 4), cfg.finetune_for("spelling", 3)
    assert (changed.lr, changed.steps, changed.seed) == (3e-4, 120, 4)
    assert (plain.lr, plain.steps, plain.seed) == (demo.finetune.lr, demo.finetune.steps, 3)
    assert cfg.steps_for("word_order") == 120 and cfg.steps_for("spelling") == 80
    assert cfg.recipe()["finetune_by_task"] != demo.recipe()["finetune_by_task"]
