"""Builders of the small real models and task files the evaluator tests share.

Importable from a plain script too (the vLLM runner and the benchmark use it).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from merge3.zoo import TinyCausalConfig, build_tiny_encoder, build_tiny_gpt2, build_tiny_llama

TOPIC_LABELS = ["math", "prose"]


def build_models(root: Path) -> dict[str, Path]:
    """Two tiny GPT-2s (different seeds), a tiny Llama and a tiny encoder with heads.

    Untrained, with a large init (std 0.3) so greedy answers differ from prompt to prompt
    (a few seconds of training only teaches these models the most frequent characters).
    """
    cfg = TinyCausalConfig(init_std=0.3)
    return {
        "gpt2_a": build_tiny_gpt2(root / "gpt2_a", seed=0, cfg=cfg),
        "gpt2_b": build_tiny_gpt2(root / "gpt2_b", seed=1, cfg=cfg),
        "llama": build_tiny_llama(root / "llama", seed=2, cfg=cfg),
        "encoder": build_tiny_encoder(
            root / "encoder", {"topic": TOPIC_LABELS, "parity": ["even", "odd"]}
        ),
    }


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_tasks(root: Path, n: int = 40, seed: int = 0) -> dict[str, Path]:
    """Three task YAMLs with JSONL data: generative, multiple-choice, classification."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    arith = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        wrong = sorted({(a + b + d) % 19 for d in (3, 7)} - {a + b})
        choices = [str(a + b), *map(str, wrong)]
        rng.shuffle(choices)
        arith.append({"item_id": f"add-{i:03d}", "a": a, "b": b, "answer": str(a + b),
                      "choices": choices, "gold": choices.index(str(a + b))})
    _write_jsonl(root / "arith.jsonl", arith)
    (root / "arith_gen.yaml").write_text(
        "task: arith_gen\nformat: generative\n"
        "dataset:\n  data_files: arith.jsonl\n  split: test\n"
        "id_field: item_id\nprompt: 'Q: {a}+{b}=? A:'\ntarget_field: answer\n"
        "num_fewshot: 1\nfewshot_delimiter: \"\\n\"\n"
        "answer_regex: '(-?\\d+)'\nstop: [\"\\n\"]\nmax_new_tokens: 6\n"
    )
    (root / "arith_mc.yaml").write_text(
        "task: arith_mc\nformat: multiple_choice\n"
        "dataset:\n  data_files: arith.jsonl\n  split: test\n"
        "id_field: item_id\nprompt: 'Q: {a}+{b}=? A:'\nchoices_field: choices\n"
        "label_field: gold\nmetric: acc\n"
    )
    topic = []
    words = ["sum", "add", "plus", "story", "poem", "novel", "seven", "river"]
    for i in range(n):
        label = i % 2
        text = " ".join(rng.choice(words[:4] if label == 0 else words[4:]) for _ in range(4))
        topic.append({"id": i, "text": text, "label": label})
    _write_jsonl(root / "topic.jsonl", topic)
    (root / "topic.yaml").write_text(
        "task: topic\nformat: classification\n"
        "dataset:\n  data_files: topic.jsonl\n  split: test\n"
        "id_field: id\ninput_field: text\nlabel_field: label\n"
    )
    return {
        "arith_gen": root / "arith_gen.yaml",
        "arith_mc": root / "arith_mc.yaml",
        "topic": root / "topic.yaml",
    }
