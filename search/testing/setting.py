"""A small real search setting: a tiny BERT encoder, two experts, two 'teacher' tasks.

Each task's labels are what its own expert predicts, so each expert is perfect on its
task and merges trade one task against the other — a front worth searching. An item
bank per task is calibrated from a population of random merges scored on every item.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from transformers import BertModel

from evaluators.hf import HFEncoder
from merge3.checkpoints import Checkpoint
from merge3.testing.synthetic import perturb
from merge3.zoo.tiny import TinyEncoderConfig, build_tiny_encoder, save_head
from search.materialize import Materializer

TASKS = {"alpha": ["a", "b", "c"], "beta": ["x", "y", "z"]}
N_ITEMS = 40


def _texts(seed: int) -> list[str]:
    """Short 'sentences' of words drawn from two of eight letter groups."""
    rng = random.Random(seed)
    groups = ["abc", "def", "ghi", "jkl", "mno", "pqr", "stu", "vwx"]
    texts = []
    for _ in range(N_ITEMS):
        pair = rng.sample(groups, 2)
        words = ["".join(rng.choice(rng.choice(pair)) for _ in range(rng.randint(2, 6)))
                 for _ in range(rng.randint(2, 5))]
        texts.append(" ".join(words))
    return texts


def _centred_heads(base: Path, texts: list[str]) -> None:
    """Re-draw each head around the base's mean feature, so predictions vary by input."""
    encoder = HFEncoder(base, dtype="float32")
    generator = torch.Generator().manual_seed(5)
    for task, labels in TASKS.items():
        features = encoder.features(texts, "mean")
        weight = torch.randn(len(labels), features.shape[1], generator=generator)
        weight = weight / features.std(0).clamp_min(1e-6)
        save_head(base / "heads" / f"{task}.safetensors", weight,
                  -weight @ features.mean(0), task, labels)


def build_setting(root: Path, *, population: int = 16) -> dict:
    torch.manual_seed(0)
    cfg = TinyEncoderConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    base = build_tiny_encoder(root / "base", TASKS, seed=0, cfg=cfg)
    _centred_heads(base, _texts(0) + _texts(1))
    experts = {}
    for i, task in enumerate(TASKS, start=1):
        model = perturb(BertModel.from_pretrained(base), seed=10 + i, scale=0.4)
        out = root / f"expert_{task}"
        model.save_pretrained(out)
        for entry in base.iterdir():
            if entry.name == "heads":
                shutil.copytree(entry, out / "heads")
            elif entry.name.startswith("tokenizer") or entry.name == "special_tokens_map.json":
                shutil.copy(entry, out / entry.name)
        experts[task] = out
    tasks = {}
    for i, task in enumerate(TASKS):
        texts = _texts(i)
        encoder = HFEncoder(experts[task], dtype="float32")
        head = encoder.head(task)
        predicted = (encoder.features(texts, head.pooling) @ head.weight.T + head.bias)
        rows = [{"item_id": f"{task}-{k:03d}", "text": t, "label": int(p)}
                for k, (t, p) in enumerate(zip(texts, predicted.argmax(1).tolist()))]
        (root / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / f"{task}.yaml").write_text(
            f"task: {task}\nformat: classification\n"
            f"dataset:\n  data_files: {task}.jsonl\n  split: test\n"
            "id_field: item_id\ninput_field: text\nlabel_field: label\n")
        tasks[task] = root / f"{task}.yaml"
    banks = calibrate_banks(root, base, experts, tasks, population)
    return {"root": root, "base": base, "experts": experts, "tasks": tasks, "banks": banks}


def calibrate_banks(root: Path, base: Path, experts: dict, tasks: dict, population: int):
    """Score random task-arithmetic merges (and the endpoints) on every item; fit banks."""
    import numpy as np

    from evaluators.tasks import load_task
    from irt import ResponseMatrix, calibrate, save_bank

    materializer = Materializer(Checkpoint(base).state_dict(),
                                [Checkpoint(p).state_dict() for p in experts.values()])
    evaluator = HFEncoder(base, dtype="float32")
    rng = np.random.default_rng(0)
    models = {"base": [0.0, 0.0], **{name: [float(k == i) for k in range(len(experts))]
                                      for i, name in enumerate(experts)}}
    for m in range(population):
        models[f"random_{m}"] = rng.uniform(0.0, 1.2, size=len(experts)).tolist()
    loaded = {t: load_task(p) for t, p in tasks.items()}
    banks = {}
    scores = {t: [] for t in tasks}
    for weights in models.values():
        recipe = {"merge_method": "task_arithmetic",
                  "models": [{"model": n, "parameters": {"weight": w}}
                             for n, w in zip(experts, weights)]}
        evaluator.load_weights(materializer.materialize(recipe))
        for task, loaded_task in loaded.items():
            scores[task].append([r.score for r in evaluator.evaluate(loaded_task.items)])
    for task, loaded_task in loaded.items():
        ids = [f"{task}/{item.id}" for item in loaded_task.items]
        matrix = ResponseMatrix(np.array(scores[task]), tuple(models), tuple(ids),
                                tuple([task] * len(ids)))
        bank = calibrate(matrix, model="2pl", engine="scipy", epochs=300, seed=0)
        banks[task] = save_bank(bank, root / "banks" / task)
    return root / "banks"


def search_config(setting: dict, **overrides) -> dict:
    """A small search config over a setting (built by :func:`build_setting`); overrides
    merge into its sections."""
    config = {
        "name": "test-search",
        "base_model": str(setting["base"]),
        "experts": {k: str(v) for k, v in setting["experts"].items()},
        "method": "task_arithmetic",
        "genome": {"weight": {"per": "model", "layer_groups": 2, "low": 0.0, "high": 1.2}},
        "tasks": {k: str(v) for k, v in setting["tasks"].items()},
        "fitness": {"estimator": "mp-irt", "item_bank": str(setting["banks"]), "anchors": 12},
        "strategy": {"population": 4, "generations": 3, "seed": 0},
        "workers": {"count": 2, "timeout": 120},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config
