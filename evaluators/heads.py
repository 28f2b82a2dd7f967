"""Per-task classification heads of a shared encoder (docs/formats.md, "Per-task heads")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evaluators.errors import ModelLoadError
from merge3.registry import did_you_mean

if TYPE_CHECKING:
    import torch

__all__ = ["Head", "load_head", "available_heads", "pool"]


@dataclass(frozen=True, slots=True)
class Head:
    """A linear head: logits = features @ weight.T + bias (weight C x d, bias C)."""

    task: str
    weight: torch.Tensor
    bias: torch.Tensor
    pooling: str
    labels: tuple[str, ...]


def available_heads(model_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(model_dir) / "heads").glob("*.safetensors"))


def load_head(model_dir: str | Path, name: str) -> Head:
    """Read ``model_dir/heads/<name>.safetensors``; errors list the heads that exist."""
    from safetensors import safe_open

    path = Path(model_dir) / "heads" / f"{name}.safetensors"
    if not path.is_file():
        known = available_heads(model_dir)
        raise ModelLoadError(
            f"Model {str(model_dir)!r} has no head for task {name!r} ({str(path)!r} is "
            f"missing).{did_you_mean(name, known)}",
            fix=f"heads present: {', '.join(known) or 'none'}; save one with "
            "merge3.zoo.save_head or set `head:` in the task YAML.",
        )
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        names = set(f.keys())
        if not {"weight", "bias"} <= names:
            raise ModelLoadError(f"Head {str(path)!r} needs tensors 'weight' and 'bias'.")
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    pooling = metadata.get("pooling", "mean")
    if pooling not in ("mean", "cls"):
        raise ModelLoadError(f"Head {str(path)!r}: pooling {pooling!r} is not mean or cls.")
    labels_raw = metadata.get("labels")
    labels = tuple(json.loads(labels_raw)) if labels_raw else tuple(
        str(i) for i in range(weight.shape[0])
    )
    if weight.ndim != 2 or bias.shape != (weight.shape[0],) or len(labels) != weight.shape[0]:
        raise ModelLoadError(
            f"Head {str(path)!r}: weight {tuple(weight.shape)}, bias {tuple(bias.shape)} and "
            f"{len(labels)} labels do not agree (want C x d, C, C)."
        )
    return Head(metadata.get("task", name), weight.float(), bias.float(), pooling, labels)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, d) hidden states -> (B, d) features: masked mean, or the first token."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
