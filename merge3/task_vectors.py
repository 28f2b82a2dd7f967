"""Task vectors: τ_t = θ_t − θ_0 and their arithmetic (Ilharco et al., ICLR 2023).

A :class:`TaskVector` maps parameter names to delta tensors. Only floating-point
tensors have deltas; integer and bool buffers are never merged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from numbers import Real

import torch

from merge3.checkpoints import Checkpoint
from merge3.errors import MergeError

__all__ = ["TaskVector", "layer_index"]

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")


def layer_index(name: str) -> int | None:
    """The transformer block a parameter belongs to (``model.layers.3.mlp...`` -> 3), or None."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


class TaskVector(Mapping[str, torch.Tensor]):
    """A mapping ``name -> θ_t − θ_0`` with +, −, scalar ×, negation and per-layer views."""

    __slots__ = ("_deltas",)

    def __init__(self, deltas: Mapping[str, torch.Tensor]) -> None:
        self._deltas = dict(deltas)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_state_dicts(
        cls,
        base: Mapping[str, torch.Tensor],
        finetuned: Mapping[str, torch.Tensor],
        *,
        dtype: torch.dtype = torch.float32,
    ) -> TaskVector:
        deltas = {}
        for name, base_tensor in base.items():
            if not base_tensor.is_floating_point():
                continue
            if name not in finetuned:
                raise MergeError(
                    f"Tensor {name!r} is in the base model but not in the fine-tuned one.",
                    fix="both models must share one architecture.",
                )
            tuned = finetuned[name]
            if tuned.shape != base_tensor.shape:
                raise MergeError(
                    f"Tensor {name!r} has shape {tuple(tuned.shape)} in the fine-tuned model "
                    f"but {tuple(base_tensor.shape)} in the base.",
                    fix="both models must share one architecture.",
                )
            deltas[name] = tuned.to(dtype) - base_tensor.to(dtype)
        return cls(deltas)

    @classmethod
    def from_checkpoints(
        cls,
        base: str | Checkpoint,
        finetuned: str | Checkpoint,
        *,
        dtype: torch.dtype = torch.float32,
        names: Iterable[str] | None = None,
    ) -> TaskVector:
        """τ from two model directories, read tensor by tensor."""
        base_ckpt = base if isinstance(base, Checkpoint) else Checkpoint(base)
        tuned_ckpt = finetuned if isinstance(finetuned, Checkpoint) else Checkpoint(finetuned)
        deltas = {}
        for name in names if names is not None else base_ckpt.names():
            base_tensor = base_ckpt.get(name)
            if not base_tensor.is_floating_point():
                continue
            deltas.update(
                cls.from_state_dicts(
                    {name: base_tensor}, {name: tuned_ckpt.get(name)}, dtype=dtype
                )._deltas
            )
        return cls(deltas)

    # -- mapping ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._deltas[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._deltas)

    def __len__(self) -> int:
        return len(self._deltas)

    # -- arithmetic -----------------------------------------------------------------------
    def _check_same_keys(self, other: TaskVector) -> None:
        if self._deltas.keys() != other._deltas.keys():
            extra = sorted(self._deltas.keys() ^ other._deltas.keys())[0]
            raise MergeError(
                f"Task vectors differ in their tensors (e.g. {extra!r}).",
                fix="build both from models of the same architecture.",
            )

    def __add__(self, other: TaskVector) -> TaskVector:
        if isinstance(other, Real) and other == 0:  # lets sum() start at 0
            return self
        self._check_same_keys(other)
        return TaskVector({k: v + other[k] for k, v in self._deltas.items()})

    __radd__ = __add__

    def __sub__(self, other: TaskVector) -> TaskVector:
        return self + (-other)

    def __neg__(self) -> TaskVector:
        return TaskVector({k: -v for k, v in self._deltas.items()})

    def __mul__(self, scale: float) -> TaskVector:
        return TaskVector({k: v * float(scale) for k, v in self._deltas.items()})

    __rmul__ = __mul__

    # -- views and application --------------------------------------------------------------
    def layers(self) -> dict[int | None, dict[str, torch.Tensor]]:
        """Group the deltas by transformer block; None holds embeddings, final norms, heads."""
        groups: dict[int | None, dict[str, torch.Tensor]] = {}
        for name, delta in self._deltas.items():
            groups.setdefault(layer_index(name), {})[name] = delta
        return groups

    def norm(self) -> float:
        return float(torch.sqrt(sum((v.double() ** 2).sum() for v in self._deltas.values())))

    def apply_to(
        self, base: Mapping[str, torch.Tensor], scale: float = 1.0
    ) -> dict[str, torch.Tensor]:
        """θ_0 + scale·τ, in the base's dtypes; non-float buffers copied from the base."""
        out = {}
        for name, tensor in base.items():
            if name in self._deltas:
                out[name] = (tensor.float() + scale * self._deltas[name]).to(tensor.dtype)
            else:
                out[name] = tensor.clone()
        return out
