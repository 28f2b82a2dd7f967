"""Build the merge-speed checkpoints: a ~258M-parameter Llama base and two experts.

    nice -n 10 .venv/bin/python benchmarks/merge_speed/build_data.py

Writes ``benchmarks/merge_speed/data/{base,expert_1,expert_2}`` (git-ignored): bfloat16,
sharded safetensors (200 MB shards: the whole model is 0.52 GB, so 1 GB shards would
hold it in one file), config.json and a small tokenizer. An expert is the base plus a
dense Gaussian delta of 5% of each tensor's standard deviation. Idempotent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from merge3.testing.synthetic import save_char_tokenizer

HERE = Path(__file__).resolve().parent
SHARD_SIZE = "200MB"


def config() -> LlamaConfig:
    """hidden 1024, 16 layers, MLP 2560, vocab 32000, untied head: 258.5M parameters."""
    return LlamaConfig(
        vocab_size=32000, hidden_size=1024, intermediate_size=2560, num_hidden_layers=16,
        num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
        tie_word_embeddings=False, bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )


def build(out: Path, seed: int = 0) -> None:
    names = ["base", "expert_1", "expert_2"]
    if all((out / n / "config.json").exists() for n in names):
        print(f"{out}: already built")
        return
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config()).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.1f}M parameters, {params * 2 / 1e9:.2f} GB in bfloat16")
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    for i, name in enumerate(names):
        gen = torch.Generator().manual_seed(seed * 100 + i)
        with torch.no_grad():
            for key, param in model.state_dict().items():
                param.copy_(base_state[key])
                if i and param.is_floating_point():
                    std = float(base_state[key].float().std()) if param.numel() > 1 else 0.02
                    scale = 0.05 * (std if std > 0 else 0.02)
                    noise = torch.randn(param.shape, generator=gen) * scale
                    param.add_(noise.to(param.dtype))
        model.save_pretrained(out / name, max_shard_size=SHARD_SIZE)
        save_char_tokenizer(out / name)
        print(f"wrote {out / name}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
