"""Encoder forward passes for MASS: pooled last hidden states and, in the same pass, the
pooled input of the routing layer (captured by a forward pre-hook).

Texts are tokenised once into length-sorted batches (``merge3.zoo.encoder.encode``);
results come back in the order of the texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from merge3.routing.errors import RoutingError
from merge3.zoo.encoder import Batches, encode, pool_mean

__all__ = ["encode", "pool_tokens", "forward_features", "POOLINGS"]

POOLINGS = ("mean", "cls")


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, d) -> (B, d): masked mean over tokens, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        return pool_mean(hidden, mask)
    raise RoutingError(f"Unknown pooling {pooling!r}.", fix=f"use one of {', '.join(POOLINGS)}.")


@contextmanager
def _capture(model: torch.nn.Module, module_name: str, pooling: str, sink: list):
    """Append the pooled input of ``module_name`` to ``sink`` at each forward pass."""
    modules = dict(model.named_modules())
    if module_name not in modules:
        from merge3.registry import did_you_mean

        raise RoutingError(
            f"The model has no module {module_name!r} to read the routing feature from."
            f"{did_you_mean(module_name, list(modules))}",
            fix="route on a weight of this architecture (see --route-layer).")
    state: dict[str, torch.Tensor] = {}

    def hook(_module, args):
        sink.append(pool_tokens(args[0].float(), state["mask"], pooling))

    handle = modules[module_name].register_forward_pre_hook(hook)
    try:
        yield state
    finally:
        handle.remove()


@torch.inference_mode()
def forward_features(
    model: torch.nn.Module,
    batches: Batches,
    poolings: Sequence[str] = ("mean",),
    *,
    capture: str | None = None,
    capture_pooling: str = "mean",
    device: torch.device | str = "cpu",
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One pass over ``batches``: {pooling: (N, d) features}, and the (N, n) pooled input
    of module ``capture`` (None without one); rows in the original text order."""
    pooled: dict[str, list[torch.Tensor]] = {p: [] for p in poolings}
    captured: list[torch.Tensor] = []
    with _capture(model, capture, capture_pooling, captured) if capture else _null() as state:
        for ids, mask in zip(batches.input_ids, batches.attention_mask):
            ids, mask = ids.to(device), mask.to(device)
            if state is not None:
                state["mask"] = mask
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            for pooling in poolings:
                pooled[pooling].append(pool_tokens(hidden, mask, pooling).cpu())

    def unsort(chunks: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(chunks) if chunks else torch.zeros(0)
        out = torch.empty_like(stacked)
        out[batches.order] = stacked
        return out

    features = {p: unsort(chunks) for p, chunks in pooled.items()}
    return features, (unsort([c.cpu() for c in captured]) if capture else None)


@contextmanager
def _null():
    yield None
