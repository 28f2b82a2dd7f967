"""merge3.zoo.tiny: real tokenizers and models, deterministic, small."""

from __future__ import annotations

import json

from safetensors import safe_open
from transformers import AutoTokenizer

from merge3.zoo import TinyCausalConfig, build_char_tokenizer, build_tiny_gpt2


def test_char_tokenizer_round_trips_and_loads_with_autotokenizer(tmp_path) -> None:
    build_char_tokenizer(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "Q: 3+4=? A: 7\n héllo"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode())  # one token per byte
    assert tokenizer.decode(ids) == text
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<pad>")


def test_builders_are_deterministic_and_small(models, tmp_path) -> None:
    again = build_tiny_gpt2(tmp_path / "again", seed=0, cfg=TinyCausalConfig(init_std=0.3))
    first = (models["gpt2_a"] / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == first
    assert (models["gpt2_b"] / "model.safetensors").read_bytes() != first
    for name in ("gpt2_a", "llama", "encoder"):
        size = sum(p.stat().st_size for p in models[name].rglob("*") if p.is_file())
        assert size < 5_000_000, name
        assert (models[name] / "tokenizer.json").is_file()


def test_trained_model_differs_from_untrained(tmp_path) -> None:
    cfg = TinyCausalConfig(train_steps=3, batch_size=4, seq_len=32)
    trained = build_tiny_gpt2(tmp_path / "t", seed=0, cfg=cfg)
    untrained = build_tiny_gpt2(tmp_path / "u", seed=0)
    assert (trained / "model.safetensors").read_bytes() != (
        untrained / "model.safetensors").read_bytes()


def test_encoder_heads_follow_the_formats_doc(models) -> None:
    with safe_open(str(models["encoder"] / "heads" / "topic.safetensors"), "pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == {"weight", "bias"}
        assert tuple(f.get_tensor("weight").shape) == (2, 64)
    assert meta["task"] == "topic" and meta["pooling"] == "mean"
    assert json.loads(meta["labels"]) == ["math", "prose"]
