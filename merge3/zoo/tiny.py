"""Tiny real models with real tokenizers, built offline and deterministically from a seed.

These are fixtures for tests, benchmarks and demos: a byte-level character tokenizer
(``tokenizer.json``, loadable with ``AutoTokenizer``), a tiny GPT-2 and a tiny Llama causal
LM, and a tiny BERT-style encoder with per-task classification heads in the
``heads/<task>.safetensors`` format of docs/formats.md. Each is saved with
``save_pretrained`` as safetensors and weighs well under a few MB. Causal LMs can be
trained for a few steps on a small corpus so that their greedy answers differ per prompt.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PAD_TOKEN",
    "EOS_TOKEN",
    "TinyCausalConfig",
    "TinyEncoderConfig",
    "arithmetic_corpus",
    "build_char_tokenizer",
    "build_tiny_gpt2",
    "build_tiny_llama",
    "build_tiny_encoder",
    "save_head",
]

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<|endoftext|>"


@dataclass(frozen=True, slots=True)
class TinyCausalConfig:
    """Size and training budget of a tiny causal LM (defaults: ~0.1 M parameters)."""

    hidden_size: int = 64  # d_model
    num_layers: int = 2
    num_heads: int = 2  # head_dim 32: vLLM's CPU attention needs head_dim >= 32
    intermediate_size: int = 128  # Llama MLP width (GPT-2 uses 4 * hidden_size)
    max_positions: int = 256  # longest prompt + generation, in characters
    train_steps: int = 0  # 0 = random weights; ~40 steps take a few seconds on a CPU
    batch_size: int = 16
    seq_len: int = 64
    learning_rate: float = 1e-2
    init_std: float = 0.02  # weight init; larger (~0.3) makes an untrained model's greedy
    # answers depend strongly on the prompt


@dataclass(frozen=True, slots=True)
class TinyEncoderConfig:
    """Size of a tiny BERT-style encoder."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 128


def _byte_vocab() -> dict[str, int]:
    """GPT-2's reversible byte -> printable-character table: one token per byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    by_byte = dict(zip(printable, chars))
    return {chr(by_byte[byte]): byte for byte in range(256)}


def build_char_tokenizer(out_dir: str | Path | None = None):
    """A byte-level character tokenizer: 256 byte tokens + ``<|endoftext|>`` + ``<pad>``.

    A byte-level BPE with no merges, so every character of ASCII text is one token and
    decoding is exact. Saved (when ``out_dir`` is given) as ``tokenizer.json`` +
    ``tokenizer_config.json``; ``AutoTokenizer.from_pretrained(out_dir)`` loads it.
    Returns the ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = _byte_vocab()
    vocab[EOS_TOKEN] = 256
    vocab[PAD_TOKEN] = 257
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=None,
        pad_token=PAD_TOKEN,
        model_max_length=1024,
    )
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def arithmetic_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Short lines like ``"Q: 3+4=? A: 7"``: a corpus a tiny LM partly learns in seconds."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        lines.append(f"Q: {a}+{b}=? A: {a + b}")
    return lines


def _train_causal(model, tokenizer, cfg: TinyCausalConfig, corpus: Sequence[str], seed: int):
    """A few steps of next-token training (AdamW, one thread) so outputs depend on input."""
    import torch

    if cfg.train_steps <= 0:
        return
    text = "\n".join(corpus) + "\n"
    ids = torch.tensor(tokenizer.backend_tokenizer.encode(text).ids, dtype=torch.long)
    if len(ids) <= cfg.seq_len + 1:
        raise ValueError("the training corpus is shorter than one training window")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    model.train()
    for _ in range(cfg.train_steps):
        starts = torch.randint(
            0, len(ids) - cfg.seq_len - 1, (cfg.batch_size,), generator=generator
        )
        batch = torch.stack([ids[s : s + cfg.seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def _save_causal(model, tokenizer, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.eos_token_id
    model.save_pretrained(str(out_dir))  # safetensors by default
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def _build_causal(kind: str, out_dir, seed, cfg, corpus) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    cfg = cfg or TinyCausalConfig()
    tokenizer = build_char_tokenizer()
    common = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "initializer_range": cfg.init_std,
    }
    torch.manual_seed(seed)
    if kind == "gpt2":
        config = GPT2Config(
            n_embd=cfg.hidden_size,
            n_layer=cfg.num_layers,
            n_head=cfg.num_heads,
            n_positions=cfg.max_positions,
            **common,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_positions,
            tie_word_embeddings=False,
            **common,
        )
        model = LlamaForCausalLM(config)
    model.eval()
    _train_causal(model, tokenizer, cfg, corpus or arithmetic_corpus(seed=seed), seed)
    return _save_causal(model, tokenizer, Path(out_dir))


def build_tiny_gpt2(
    out_dir: str | Path,
    seed: int = 0,
    cfg: TinyCausalConfig | None = None,
    corpus: Sequence[str] | None = None,
) -> Path:
    """Build and save a tiny GPT-2 (tied embeddings) with the character tokenizer.

    Deterministic for a given ``seed``, ``cfg`` and ``corpus`` (default: the arithmetic
    corpus). Returns ``out_dir``, a Hugging Face model directory.
    """
    return _build_causal("gpt2", out_dir, seed, cfg, corpus)


def build_tiny_llama(
    out_dir: str | Path,
    seed: int = 0,
    cfg: TinyCausalConfig | None = None,
    corpus: Sequence[str] | None = None,
) -> Path:
    """Build and save a tiny Llama (untied embeddings, RoPE, SwiGLU) with the tokenizer."""
    return _build_causal("llama", out_dir, seed, cfg, corpus)


def save_head(
    path: str | Path,
    weight,
    bias,
    task: str,
    labels: Sequence[str],
    pooling: str = "mean",
) -> Path:
    """Write one per-task head: ``weight`` (C x d), ``bias`` (C,) and its metadata."""
    import torch
    from safetensors.torch import save_file

    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "weight": weight.detach().to(torch.float32).contiguous(),
        "bias": bias.detach().to(torch.float32).contiguous(),
    }
    metadata = {"task": task, "pooling": pooling, "labels": json.dumps(list(labels))}
    save_file(tensors, str(path), metadata=metadata)
    return path


def build_tiny_encoder(
    out_dir: str | Path,
    heads: dict[str, Sequence[str]],
    seed: int = 0,
    cfg: TinyEncoderConfig | None = None,
    pooling: str = "mean",
) -> Path:
    """Build and save a tiny BERT encoder plus one random head per task.

    ``heads`` maps a task name to its class labels; each head is written to
    ``out_dir/heads/<task>.safetensors`` (docs/formats.md). Weights are drawn from
    ``seed``; heads are scaled so predictions vary across inputs.
    """
    import torch
    from transformers import BertConfig, BertModel

    cfg = cfg or TinyEncoderConfig()
    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = BertModel(config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    generator = torch.Generator().manual_seed(seed + 1)
    for task, labels in heads.items():
        weight = torch.randn(len(labels), cfg.hidden_size, generator=generator) * 2.0
        bias = torch.zeros(len(labels))
        save_head(out / "heads" / f"{task}.safetensors", weight, bias, task, labels, pooling)
    return out
