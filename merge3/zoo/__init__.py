"""merge3's model zoo. ``merge3.zoo.tiny`` builds tiny real models offline for tests."""

from __future__ import annotations

from merge3.zoo.tiny import (
    TinyCausalConfig,
    TinyEncoderConfig,
    arithmetic_corpus,
    build_char_tokenizer,
    build_tiny_encoder,
    build_tiny_gpt2,
    build_tiny_llama,
    save_head,
)

__all__ = [
    "TinyCausalConfig",
    "TinyEncoderConfig",
    "arithmetic_corpus",
    "build_char_tokenizer",
    "build_tiny_encoder",
    "build_tiny_gpt2",
    "build_tiny_llama",
    "save_head",
]
