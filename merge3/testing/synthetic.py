"""Small real checkpoints built from a seed, for the demo, tests and benchmarks.

A tiny Llama or GPT-2 (random init, a character-level tokenizer saved beside it) and
"experts" made by adding structured low-rank-plus-noise deltas to the base. They
exercise every code path of merging; they carry no skill, so they show no merging gains.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", *list("abcdefghijklmnopqrstuvwxyz0123456789 +=.")]


def save_char_tokenizer(out: Path) -> None:
    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(out)


def tiny_model(arch: str, seed: int, *, hidden: int = 32, layers: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=hidden,
                             intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=64, tie_word_embeddings=False,
                             bos_token_id=2, eos_token_id=3, pad_token_id=0)
        return LlamaForCausalLM(config)
    if arch == "gpt2":
        config = GPT2Config(vocab_size=len(VOCAB), n_embd=hidden, n_layer=layers, n_head=4,
                            n_positions=64, bos_token_id=2, eos_token_id=3)
        return GPT2LMHeadModel(config)
    raise ValueError(arch)


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """An 'expert': every float parameter moved by a low-rank-plus-noise delta."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                m, n = param.shape
                r = max(1, min(m, n) // 4)
                low = torch.randn(m, r, generator=gen) @ torch.randn(r, n, generator=gen) / r
                param.add_(scale * (low + 0.1 * torch.randn(m, n, generator=gen)))
            else:
                param.add_(scale * 0.1 * torch.randn(param.shape, generator=gen))
    return model


def build_family(root: Path, arch: str, *, experts: int, seed: int,
                 dtype: torch.dtype = torch.float32,
                 shard_size: str | None = None, hidden: int = 32,
                 layers: int = 3) -> dict[str, Path]:
    """Write base/ and expert_<i>/ model directories under ``root``; returns their paths."""
    hf_logging.disable_progress_bar()
    out = {}
    for i in range(experts + 1):
        name = "base" if i == 0 else f"expert_{i}"
        model = tiny_model(arch, seed, hidden=hidden, layers=layers)
        if i:
            perturb(model, seed * 100 + i)
        path = root / name
        kwargs = {"max_shard_size": shard_size} if shard_size else {}
        model.to(dtype).save_pretrained(path, **kwargs)
        save_char_tokenizer(path)
        out[name] = path
    return out
