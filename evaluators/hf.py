"""The transformers backend: batched greedy generation (KV cache, left padding), batched
log-likelihoods, and batched encoder + per-task head classification; CPU or CUDA."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from evaluators.errors import EvaluatorError, ModelLoadError
from evaluators.heads import Head, load_head, pool
from evaluators.items import GenerationSpec, Item, ItemResult
from evaluators.protocol import (
    CausalLMEvaluator,
    check_model_dir,
    load_tokenizer,
    resolve_max_length,
)
from evaluators.requests import LoglikelihoodRequest
from evaluators.scoring import cut_at_stop, score_classification
from evaluators.weights import copy_state_into
from merge3.remote_code import check_remote_code

if TYPE_CHECKING:
    import torch

    from evaluators.weights import Weights

__all__ = ["HFCausalLM", "HFEncoder", "HFEvaluator", "model_kind", "resolve_device_dtype"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``device`` auto|cpu|cuda[:i]; ``dtype`` auto|float32|bfloat16|float16 (auto: fp32 on
    the CPU, bf16 on CUDA)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EvaluatorError(
            f"Device {device!r} was asked for but CUDA is not available.",
            fix="use --device cpu (or auto).",
        )
    if dtype not in _DTYPES:
        raise EvaluatorError(f"Unknown dtype {dtype!r}.", fix=f"use one of {', '.join(_DTYPES)}.")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return torch.device(device), getattr(torch, dtype)


def model_kind(model_path: str | Path) -> Literal["causal", "encoder"]:
    """``causal`` for *ForCausalLM / *LMHeadModel architectures, else ``encoder``."""
    config = json.loads((check_model_dir(model_path) / "config.json").read_text())
    archs = config.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if (Path(model_path) / "heads").is_dir() or archs:
        return "encoder"
    return "causal"


def _stop_criteria(tokenizer, prompt_len: int, stop: Sequence[str]):
    """Stop a row once its new text holds a stop sequence (EOS is handled by generate)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            done = [any(s in t for s in stop) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopOnStrings()]) if stop else None


class HFCausalLM(CausalLMEvaluator):
    """A resident transformers causal LM."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        tokenizer: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        progress: bool = False,
        trust_remote_code: bool = False,
        max_length: int | None = None,
        add_bos_token: bool | None = None,
    ) -> None:
        """``max_length``: the window in tokens (default: the model's own, as lm-eval
        resolves it); ``add_bos_token``: lm-eval's model argument (default: the
        tokenizer's own special tokens)."""
        from transformers import AutoModelForCausalLM

        self.model_path = check_model_dir(model_path)
        check_remote_code(self.model_path, trust_remote_code)
        self.tokenizer = load_tokenizer(model_path, tokenizer,
                                        trust_remote_code=trust_remote_code)
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=self.dtype, trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()
        self.max_length = resolve_max_length(self.model.config.to_dict(), model_path,
                                             max_length)
        self.add_bos_token = add_bos_token
        self.batch_size = batch_size
        self.progress = progress

    def load_weights(self, state: Weights) -> None:
        copy_state_into(self.model, state)

    def _bar(self, total: int, what: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=what, disable=not self.progress, leave=False)

    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec) -> list[str]:
        """Greedy, batched by similar length, left-padded, with the KV cache."""
        import torch

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id
        with self._bar(len(prompts), "generate") as bar, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    n = len(prompts[i])
                    ids[row, width - n :] = torch.tensor(prompts[i])
                    mask[row, width - n :] = 1
                generated = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=spec.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    pad_token_id=pad,
                    eos_token_id=self.tokenizer.eos_token_id,
                    stopping_criteria=_stop_criteria(self.tokenizer, width, spec.stop),
                )
                texts = self.tokenizer.batch_decode(
                    generated[:, width:].cpu(), skip_special_tokens=True
                )
                for i, text in zip(batch, texts):
                    out[i] = cut_at_stop(text, spec.stop)
                bar.update(len(batch))
        return out

    def loglikelihoods(self, requests: Sequence[LoglikelihoodRequest]) -> list[float]:
        """Batched, right-padded forward passes over ``(context + continuation)[:-1]`` (as
        lm-eval: the last token is only predicted); sums of log-softmax at the
        continuation tokens."""
        import torch

        order = sorted(
            range(len(requests)),
            key=lambda i: -(len(requests[i].context) + len(requests[i].continuation)),
        )
        out = [0.0] * len(requests)
        with self._bar(len(requests), "loglikelihood") as bar, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                seqs = [
                    (requests[i].context + requests[i].continuation)[-(self.max_length + 1):]
                    for i in batch
                ]
                width = max(len(s) - 1 for s in seqs)
                ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, seq in enumerate(seqs):
                    ids[row, : len(seq) - 1] = torch.tensor(seq[:-1])
                    mask[row, : len(seq) - 1] = 1
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
                for row, (i, seq) in enumerate(zip(batch, seqs)):
                    n_cont = len(requests[i].continuation)
                    # the logits at position p predict token p + 1 of seq
                    positions = torch.arange(len(seq) - n_cont - 1, len(seq) - 1)
                    targets = torch.tensor(seq[-n_cont:])
                    out[i] = float(logprobs[row, positions, targets].sum())
                bar.update(len(batch))
        return out


class HFEncoder:
    """A resident transformers encoder scored with per-task heads (``heads/<task>``)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        tokenizer: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        progress: bool = False,
        trust_remote_code: bool = False,
        max_length: int | None = None,
        heads_from: Mapping[str, str | Path] | None = None,
    ) -> None:
        """``max_length``: tokens kept of each input (default: the encoder's window);
        ``heads_from``: head name -> model directory to read that head from instead."""
        from transformers import AutoModel

        self.model_path = check_model_dir(model_path)
        check_remote_code(self.model_path, trust_remote_code)
        self.tokenizer = load_tokenizer(model_path, tokenizer,
                                        trust_remote_code=trust_remote_code)
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        self.model = AutoModel.from_pretrained(str(model_path), dtype=self.dtype,
                                               trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()
        self.max_length = resolve_max_length(self.model.config.to_dict(), model_path,
                                             max_length, default=512)
        self.batch_size = batch_size
        self.progress = progress
        # head name -> the model directory whose heads/ holds it (a merged encoder is scored
        # with each task's expert head; docs/formats.md)
        self.heads_from = {k: Path(v) for k, v in (heads_from or {}).items()}
        self._heads: dict[str, Head] = {}

    def head(self, name: str) -> Head:
        """Head ``name``: from ``heads_from[name]``'s heads/ when given, else this model's."""
        if name not in self._heads:
            self._heads[name] = load_head(self.heads_from.get(name, self.model_path), name)
        return self._heads[name]

    def load_weights(self, state: Weights) -> None:
        """Swap the encoder's weights (a state dict or a stream of tensors); heads stay the
        task's own (never merged)."""
        copy_state_into(self.model, state)

    def close(self) -> None:
        """Nothing to release beyond the Python objects."""

    def features(self, texts: Sequence[str], pooling: str) -> torch.Tensor:
        """(N, d) pooled last hidden states in float32, in the order of ``texts``; batches
        are sorted by length so they carry little padding."""
        import torch
        from tqdm.auto import tqdm

        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        chunks = []
        with torch.inference_mode():
            for start in tqdm(
                range(0, len(order), self.batch_size), disable=not self.progress, leave=False
            ):
                batch = self.tokenizer(
                    [texts[i] for i in order[start : start + self.batch_size]],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                chunks.append(pool(hidden.float(), batch["attention_mask"], pooling).cpu())
        if not chunks:
            return torch.zeros(0)
        stacked = torch.cat(chunks)
        out = torch.empty_like(stacked)
        out[torch.tensor(order)] = stacked
        return out

    def evaluate(self, items: Sequence[Item]) -> list[ItemResult]:
        """Classify each item with its task's head; results in the order of ``items``."""
        bad = [i for i in items if i.format != "classification"]
        if bad:
            raise EvaluatorError(
                f"Item {bad[0].id!r} of task {bad[0].task!r} is a {bad[0].format} item; an "
                "encoder scores only classification items.",
                fix="evaluate generative / multiple_choice tasks with a causal LM.",
            )
        results: list[ItemResult | None] = [None] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for k, item in enumerate(items):
            head = self.head(item.head or item.task)
            groups.setdefault((item.head or item.task, head.pooling), []).append(k)
        for (name, pooling), positions in groups.items():
            head = self.head(name)
            feats = self.features([items[k].prompt for k in positions], pooling)
            if feats.shape[1] != head.weight.shape[1]:
                raise ModelLoadError(
                    f"Head {name!r} expects {head.weight.shape[1]} features, the encoder "
                    f"gives {feats.shape[1]}.",
                    fix="use the heads trained for this encoder.",
                )
            logits = feats @ head.weight.T + head.bias
            for k, row in zip(positions, logits.tolist()):
                results[k] = score_classification(items[k], row, head.labels)
        return [r for r in results if r is not None]


def HFEvaluator(  # noqa: N802 - a factory that reads like the class it returns
    model_path: str | Path,
    *,
    kind: Literal["auto", "causal", "encoder"] = "auto",
    **options,
) -> HFCausalLM | HFEncoder:
    """The transformers evaluator for ``model_path``: a causal LM or an encoder + heads."""
    kind = model_kind(model_path) if kind == "auto" else kind
    if kind == "causal":
        return HFCausalLM(model_path, **options)
    return HFEncoder(model_path, **options)
