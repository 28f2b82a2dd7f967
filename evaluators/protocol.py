"""The Evaluator protocol and the shared plumbing of causal-LM backends.

An evaluator holds one resident model. ``evaluate(items)`` scores items (any mix of the
formats the model supports) and returns one ``ItemResult`` per item, in order;
``load_weights(state)`` swaps the model's weights in place (a candidate merge costs a
copy, never a reload). Backends only implement two primitives for causal LMs -- greedy
generation and log-likelihoods over token ids -- and share tokenization and scoring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from evaluators.errors import EvaluatorError, ModelLoadError
from evaluators.items import GenerationSpec, Item, ItemResult
from evaluators.requests import LoglikelihoodRequest, generation_prompt, loglikelihood_requests
from evaluators.scoring import score_generative, score_multiple_choice
from merge3.remote_code import check_remote_code

if TYPE_CHECKING:

    from evaluators.weights import Weights

__all__ = ["Evaluator", "CausalLMEvaluator", "load_tokenizer", "check_model_dir",
           "resolve_max_length"]


@runtime_checkable
class Evaluator(Protocol):
    """What the search needs from a backend."""

    def evaluate(self, items: Sequence[Item]) -> list[ItemResult]:
        """Score ``items`` on the resident model; one result per item, same order."""
        ...

    def load_weights(self, state: Weights) -> None:
        """Replace the resident model's weights in place (Hugging Face tensor names): a
        state dict, or ``(name, tensor)`` pairs streamed one at a time."""
        ...

    def close(self) -> None:
        """Release the model (and any engine process)."""
        ...


def check_model_dir(model_path: str | Path) -> Path:
    """The model directory, or a clear error when it is not a Hugging Face model dir."""
    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"Model {str(path)!r} is not a Hugging Face model directory (no config.json).",
            fix="pass a directory written by save_pretrained (config.json + safetensors).",
        )
    return path


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt")


def load_tokenizer(model_path: str | Path, tokenizer_path: str | Path | None = None, *,
                   trust_remote_code: bool = False):
    """Load the model's tokenizer (from ``tokenizer_path`` or the model directory); code
    shipped with it runs only with ``trust_remote_code`` (merge3.remote_code)."""
    source = Path(tokenizer_path) if tokenizer_path is not None else Path(model_path)
    if not any((source / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"Model {str(model_path)!r} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}"
            f" in {str(source)!r}).",
            fix="save the tokenizer beside the weights (tokenizer.save_pretrained(model_dir)) "
            "or pass --tokenizer DIR.",
        )
    from transformers import AutoTokenizer

    check_remote_code(source, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source),
                                                  trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"Cannot load the tokenizer of {str(model_path)!r} from {str(source)!r}: {err}.",
            fix="save the tokenizer with tokenizer.save_pretrained(model_dir).",
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_max_length(config: dict, model_path: str | Path, asked: int | None,
                       default: int = 2048) -> int:
    """The model's window in tokens, as lm-eval resolves it (``n_positions``,
    ``max_position_embeddings``, ``n_ctx``, else ``default``), or ``asked`` (``merge3 eval
    --max-length``), which must be at least 1 and fit that window."""
    text_config = config.get("text_config") or config
    own = next((int(text_config[k]) for k in ("n_positions", "max_position_embeddings",
                                              "n_ctx") if text_config.get(k)), default)
    if asked is None:
        return own
    if not 1 <= asked <= own:
        raise EvaluatorError(
            f"--max-length {asked} does not fit model {str(model_path)!r}, whose window is "
            f"{own} tokens.",
            fix=f"pass a max length between 1 and {own} (default: the model's {own}).",
        )
    return int(asked)


class CausalLMEvaluator(ABC):
    """Shared ``evaluate`` of causal-LM backends: items -> requests -> scores."""

    tokenizer: object
    max_length: int
    add_bos_token: bool | None = None  # None: the tokenizer's own special tokens (lm-eval)

    @abstractmethod
    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec) -> list[str]:
        """Greedy continuations of token-id prompts, decoded (special tokens skipped)."""

    @abstractmethod
    def loglikelihoods(self, requests: Sequence[LoglikelihoodRequest]) -> list[float]:
        """Sum of log p(continuation token | prefix) for each request."""

    @abstractmethod
    def load_weights(self, state: Weights) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default holds nothing to release."""

    def evaluate(self, items: Sequence[Item]) -> list[ItemResult]:
        """Score generative and multiple-choice items; results in the order of ``items``."""
        results: list[ItemResult | None] = [None] * len(items)
        bad = [i for i in items if i.format not in ("generative", "multiple_choice")]
        if bad:
            raise EvaluatorError(
                f"Item {bad[0].id!r} of task {bad[0].task!r} is a {bad[0].format} item; a "
                "causal LM scores only generative and multiple_choice items.",
                fix="evaluate classification tasks with an encoder model that has heads/.",
            )
        by_spec: dict[GenerationSpec, list[int]] = {}
        for k, item in enumerate(items):
            if item.format == "generative":
                assert item.generation is not None
                by_spec.setdefault(item.generation, []).append(k)
        for spec, positions in by_spec.items():
            prompts = [
                generation_prompt(self.tokenizer, items[k].prompt, self.max_length,
                                  spec.max_new_tokens, self.add_bos_token)
                for k in positions
            ]
            for k, text in zip(positions, self.generate(prompts, spec)):
                results[k] = score_generative(items[k], text)
        mc = [k for k, item in enumerate(items) if item.format == "multiple_choice"]
        if mc:
            requests = loglikelihood_requests(
                self.tokenizer, [(items[k].prompt, items[k].choices) for k in mc],
                self.max_length, self.add_bos_token,
            )
            values = self.loglikelihoods(requests)
            per_item: list[list[float]] = [[0.0] * len(items[k].choices) for k in mc]
            for request, value in zip(requests, values):
                i, j = request.index
                per_item[i][j] = value
            for k, lls in zip(mc, per_item):
                results[k] = score_multiple_choice(items[k], lls)
        return [r for r in results if r is not None]
