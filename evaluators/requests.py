"""Items -> token-level requests, shared by every causal-LM backend.

Both backends tokenize with the same Hugging Face tokenizer and hand token ids to the
model, so the transformers and vLLM backends see identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LoglikelihoodRequest", "encode", "loglikelihood_requests", "generation_prompt"]


@dataclass(frozen=True, slots=True)
class LoglikelihoodRequest:
    """log p(continuation | context), both as token ids; ``index`` = (item, choice)."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    index: tuple[int, int]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (no BOS/EOS added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _start_token(tokenizer) -> int:
    """The token that stands for "no context" (BOS, else EOS)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has neither a BOS nor an EOS token")


def _split_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Tokenize context + continuation as a whole and split it, as lm-evaluation-harness
    does: trailing spaces of the context move to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


def loglikelihood_requests(
    tokenizer, prompts_and_choices: Sequence[tuple[str, Sequence[str]]], max_length: int
) -> list[LoglikelihoodRequest]:
    """One request per (item, choice); contexts are cut from the left to fit ``max_length``."""
    requests = []
    for i, (context, choices) in enumerate(prompts_and_choices):
        for j, choice in enumerate(choices):
            context_ids, continuation_ids = _split_pair(tokenizer, context, choice)
            if not context_ids:
                context_ids = [_start_token(tokenizer)]
            if not continuation_ids:
                raise ValueError(f"choice {choice!r} encodes to no tokens")
            keep = max(max_length - len(continuation_ids), 1)
            requests.append(
                LoglikelihoodRequest(
                    tuple(context_ids[-keep:]), tuple(continuation_ids[-(max_length - 1) :]), (i, j)
                )
            )
    return requests


def generation_prompt(tokenizer, prompt: str, max_length: int, max_new_tokens: int) -> list[int]:
    """Prompt ids for generation, cut from the left to leave room for the new tokens."""
    ids = encode(tokenizer, prompt) or [_start_token(tokenizer)]
    keep = max(max_length - max_new_tokens, 1)
    return ids[-keep:]
