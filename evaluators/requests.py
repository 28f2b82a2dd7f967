"""Items -> token-level requests, shared by every causal-LM backend.

Both backends tokenize with the same Hugging Face tokenizer and hand token ids to the
model, so the transformers and vLLM backends see identical inputs. Tokenization follows
lm-evaluation-harness 0.4.13's ``HFLM`` (``tok_encode``, ``TemplateLM._encode_pair`` and
``loglikelihood``, ``generate_until``'s left truncation), restated: the tokenizer adds its
own special tokens (a Llama tokenizer its BOS) unless ``add_bos_token`` says otherwise or
the text already starts with the BOS text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LoglikelihoodRequest",
    "encode",
    "encode_text",
    "prefix_token",
    "loglikelihood_requests",
    "generation_prompt",
]


@dataclass(frozen=True, slots=True)
class LoglikelihoodRequest:
    """log p(continuation | context), both as token ids; ``index`` = (item, choice).

    ``context + continuation`` is at most the model's window + 1 tokens: the model reads
    all but the last token (lm-eval's ``(context + continuation)[-(max_length + 1):][:-1]``).
    """

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    index: tuple[int, int]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (no BOS/EOS added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prefix_token(tokenizer) -> int:
    """The token that stands for "no context" (lm-eval's ``prefix_token_id``: BOS, else
    EOS)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has neither a BOS nor an EOS token")


def _special_tokens(tokenizer, text: str, add_bos_token: bool | None) -> dict[str, bool]:
    """lm-eval's ``tok_encode`` keywords: ``add_bos_token`` if set, no special tokens when
    the text already starts with the prefix token's text, else the tokenizer's default."""
    if add_bos_token is not None:
        return {"add_special_tokens": add_bos_token}
    bos_text = tokenizer.decode(prefix_token(tokenizer))
    if bos_text and text.startswith(bos_text):
        return {"add_special_tokens": False}
    return {}


def encode_text(tokenizer, text: str, add_bos_token: bool | None = None) -> list[int]:
    """Token ids of ``text`` with the special tokens lm-eval's HF model adds."""
    return list(tokenizer.encode(text, **_special_tokens(tokenizer, text, add_bos_token)))


def _split_pair(tokenizer, context: str, continuation: str,
                add_bos_token: bool | None) -> tuple[list[int], list[int]]:
    """Tokenize context + continuation as a whole and split it after the context's own
    tokens; trailing spaces of the context move to the continuation (``_encode_pair``)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode_text(tokenizer, context + continuation, add_bos_token)
    context_ids = encode_text(tokenizer, context, add_bos_token)
    return context_ids, whole[len(context_ids):]


def _empty_context_pair(tokenizer, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's empty context: the prefix token, unless the continuation starts with it."""
    ids = encode(tokenizer, continuation)
    start = prefix_token(tokenizer)
    if ids and ids[0] == start:
        return ids[:1], ids[1:]
    return [start], ids


def loglikelihood_requests(
    tokenizer, prompts_and_choices: Sequence[tuple[str, Sequence[str]]], max_length: int,
    add_bos_token: bool | None = None,
) -> list[LoglikelihoodRequest]:
    """One request per (item, choice); contexts are cut from the left so that the model
    reads at most ``max_length`` tokens (a continuation longer than that keeps its last
    ``max_length`` tokens and one context token, where lm-eval stops with an error)."""
    requests = []
    for i, (context, choices) in enumerate(prompts_and_choices):
        for j, choice in enumerate(choices):
            if context:
                context_ids, continuation_ids = _split_pair(tokenizer, context, choice,
                                                            add_bos_token)
            else:
                context_ids, continuation_ids = _empty_context_pair(tokenizer, choice)
            if not continuation_ids:
                raise ValueError(f"choice {choice!r} encodes to no tokens")
            if not context_ids:  # a tokenizer that adds nothing and a context of spaces
                context_ids = [prefix_token(tokenizer)]
            continuation_ids = continuation_ids[-max_length:]
            keep = max(max_length + 1 - len(continuation_ids), 1)
            requests.append(
                LoglikelihoodRequest(tuple(context_ids[-keep:]), tuple(continuation_ids),
                                     (i, j))
            )
    return requests


def generation_prompt(tokenizer, prompt: str, max_length: int, max_new_tokens: int,
                      add_bos_token: bool | None = None) -> list[int]:
    """Prompt ids for generation (special tokens as lm-eval adds them), cut from the left
    to leave room for the new tokens."""
    ids = encode_text(tokenizer, prompt, add_bos_token) or [prefix_token(tokenizer)]
    keep = max(max_length - max_new_tokens, 1)
    return ids[-keep:]
