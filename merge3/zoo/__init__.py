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


def resolve(name: str):
    """The directory of zoo model ``name`` (``minilm/base``, ``minilm/expert/<task>``;
    ``@test`` selects the test-size zoo). Builds nothing: run ``merge3 zoo build`` first."""
    from merge3.zoo.names import resolve as _resolve

    return _resolve(name)


__all__ += ["resolve"]
