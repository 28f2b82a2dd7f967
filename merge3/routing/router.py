"""The MASS router: how far an input's feature lies from each task's subspace.

Crisostomi et al. 2025, "MASS: MoErging through Adaptive Subspace Selection" (reference
code: github.com/crisostomi/mass, ``compute_residual_norm`` and ``MassGate``). At one
2-D weight W of the first-pass model, each task's τ_t ≈ U_t diag(s_t) V_tᵀ; the rows of
V_tᵀ (k × n) span the input directions task t's fine-tuning acted on. For the feature z
entering W (n,), the residual r_t = ‖z − V_t V_tᵀ z‖₂ is small when z lies in task t's
subspace; the router's logits are −r.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from merge3.routing.errors import RoutingError
from merge3.routing.factors import TaskFactors
from merge3.task_vectors import layer_index

__all__ = ["ProjectionRouter", "resolve_layer", "MLP_INPUTS"]

# The input projection of a transformer block's MLP, by family (BERT, Llama, OPT/ViT).
MLP_INPUTS = ("intermediate.dense.weight", "mlp.up_proj.weight", "mlp.fc1.weight",
              "mlp.c_fc.weight")


@dataclass(frozen=True)
class ProjectionRouter:
    """Residual-norm router over the right singular bases of one matrix.

    ``bases`` is (T, k, n) with orthonormal rows per task; ``matrix`` the weight's name.
    """

    tasks: tuple[str, ...]
    matrix: str
    bases: torch.Tensor

    @classmethod
    def from_factors(cls, factors: TaskFactors, matrix: str) -> ProjectionRouter:
        """The router of ``matrix`` from the experts' TSV-C factors (no new SVD)."""
        return cls(factors.tasks, matrix, factors.basis(matrix))

    @property
    def module(self) -> str:
        """The module whose input is the routing feature (``matrix`` without ``.weight``)."""
        return self.matrix.removesuffix(".weight")

    @property
    def dim(self) -> int:
        return int(self.bases.shape[2])

    def residuals(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n) features -> (B, T) residual norms ‖z − V_t V_tᵀ z‖₂."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise RoutingError(
                f"Router of {self.matrix!r} expects (inputs, {self.dim}) features, got "
                f"{tuple(features.shape)}.",
                fix="feed the input of that layer (the first pass does this).")
        bases = self.bases.to(features.dtype)
        coords = torch.einsum("bn,tkn->btk", features, bases)
        projected = torch.einsum("btk,tkn->btn", coords, bases)
        return (features.unsqueeze(1) - projected).norm(dim=2)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T) router logits: −residual norms."""
        return -self.residuals(features)


def resolve_layer(factors: TaskFactors, layer: int | str | None) -> str:
    """The 2-D weight to route on.

    ``None``: the MLP input projection of the second-to-last block (the paper routes a
    12-block ViT-B/32 at block 10's ``mlp.c_fc``); an ``int``: that block's MLP input
    projection (negative counts from the end); a ``str``: a weight name (``.weight`` may be
    left out).
    """
    names: Sequence[str] = list(factors.low_rank)
    if isinstance(layer, str) and not layer.lstrip("-").isdigit():
        for candidate in (layer, f"{layer}.weight"):
            if candidate in factors.low_rank:
                return candidate
        factors.basis(layer)  # raises with "did you mean"
    blocks = sorted({i for n in names if (i := layer_index(n)) is not None})
    if not blocks:
        raise RoutingError("The experts have no numbered transformer blocks to route on.",
                           fix="pass the weight to route on by name, e.g. --route-layer "
                               "encoder.layer.4.intermediate.dense.weight.")
    index = -2 if layer is None else int(layer)
    if index < 0:
        if -index > len(blocks):
            raise RoutingError(f"Layer {index} does not exist: the model has {len(blocks)} "
                               "blocks.", fix=f"use 0..{len(blocks) - 1} or -1..-{len(blocks)}.")
        index = blocks[index]
    mlp_inputs = [n for n in names if layer_index(n) == index and n.endswith(MLP_INPUTS)]
    if not mlp_inputs:
        raise RoutingError(
            f"Block {index} has no MLP input projection the experts changed (looked for "
            f"{', '.join(MLP_INPUTS)}).",
            fix=f"use a block in {blocks[0]}..{blocks[-1]} or a weight name.")
    return mlp_inputs[0]
