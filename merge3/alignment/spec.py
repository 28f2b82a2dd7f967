"""Permutation specs: which axes of which tensors share a permutation.

A spec maps each permuted parameter to one entry per axis: a permutation id (``str``)
or ``None`` for an axis that is never permuted (network inputs and outputs). Two axes
carrying the same id are permuted together: the rows of ``W_i`` and the columns of
``W_{i+1}`` in an MLP, every tensor that reads from or writes to a residual stream.
Parameters absent from the spec are left untouched (and averaged as they are).

Follows the ``PermutationSpec`` of Git Re-Basin (Ainsworth et al., ICLR 2023) and of
C²M³ (Crisostomi et al., NeurIPS 2024; repo crisostomi/cycle-consistent-model-merging).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from merge3.errors import MergeError

__all__ = [
    "PermutationSpec",
    "mlp_spec",
    "sequential_mlp_spec",
    "residual_mlp_spec",
    "transformer_mlp_spec",
    "infer_spec",
]

AxisPerms = tuple[str | None, ...]


@dataclass(frozen=True)
class PermutationSpec:
    """Parameter name -> permutation id per axis; ``perm_to_axes`` is its inverse.

    ``axes["layers.1.weight"] == ("P_1", "P_0")`` says the rows of that matrix follow
    permutation ``P_1`` and its columns ``P_0``.
    """

    axes: Mapping[str, AxisPerms]
    perm_to_axes: Mapping[str, tuple[tuple[str, int], ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        inverse: dict[str, list[tuple[str, int]]] = {}
        for name, perms in self.axes.items():
            for axis, perm in enumerate(perms):
                if perm is not None:
                    inverse.setdefault(perm, []).append((name, axis))
        object.__setattr__(self, "axes", dict(self.axes))
        object.__setattr__(self, "perm_to_axes", {p: tuple(v) for p, v in inverse.items()})

    @property
    def perm_ids(self) -> tuple[str, ...]:
        return tuple(self.perm_to_axes)

    def sizes(self, state_dict: Mapping[str, Any]) -> dict[str, int]:
        """Size of every permutation, checked for consistency against ``state_dict``."""
        self.validate(state_dict)
        return {
            perm: int(state_dict[name].shape[axis])
            for perm, ((name, axis), *_) in self.perm_to_axes.items()
        }

    def validate(self, state_dict: Mapping[str, Any]) -> None:
        """Raise :class:`MergeError` if a tensor is missing or two axes of a permutation differ."""
        for name, perms in self.axes.items():
            if name not in state_dict:
                raise MergeError(
                    f"Tensor {name!r} of the permutation spec is not in the model.",
                    fix="build the spec from this model (merge3.alignment.infer_spec) "
                    "or pass the matching one.",
                )
            if len(state_dict[name].shape) != len(perms):
                raise MergeError(
                    f"Tensor {name!r} has {len(state_dict[name].shape)} axes but the spec "
                    f"lists {len(perms)}.",
                    fix="give one entry (a permutation id or None) per axis.",
                )
        for perm, uses in self.perm_to_axes.items():
            sizes = {(n, a): int(state_dict[n].shape[a]) for n, a in uses}
            if len(set(sizes.values())) > 1:
                raise MergeError(
                    f"Permutation {perm!r} is used on axes of different sizes: {sizes}.",
                    fix="check which axes share this permutation in the spec.",
                )


def _linear(name: str, rows: str | None, cols: str | None, bias: bool) -> dict[str, AxisPerms]:
    entries: dict[str, AxisPerms] = {f"{name}.weight": (rows, cols)}
    if bias and rows is not None:  # an output layer's bias is never permuted
        entries[f"{name}.bias"] = (rows,)
    return entries


def mlp_spec(layer_names: Iterable[str], bias: bool = True) -> PermutationSpec:
    """Spec of a plain MLP given its ``nn.Linear`` names in order (input to output).

    Hidden layer ``i`` gets permutation ``P_i``: rows of layer ``i`` (and its bias),
    columns of layer ``i + 1``. The input and output axes are never permuted.
    """
    names = list(layer_names)
    axes: dict[str, AxisPerms] = {}
    for i, name in enumerate(names):
        rows = f"P_{i}" if i < len(names) - 1 else None
        cols = f"P_{i - 1}" if i > 0 else None
        axes.update(_linear(name, rows, cols, bias))
    return PermutationSpec(axes)


def sequential_mlp_spec(state_dict: Mapping[str, Any]) -> PermutationSpec:
    """Spec of an MLP read from its state dict: the 2-D ``*.weight`` tensors in order,
    each one's input size equal to the previous one's output size."""
    names = [k[: -len(".weight")] for k, v in state_dict.items()
             if k.endswith(".weight") and len(v.shape) == 2]
    if len(names) < 2:
        raise MergeError(
            "A sequential MLP needs at least two 2-D '*.weight' tensors; found "
            f"{len(names)}.",
            fix="pass a PermutationSpec built for this architecture.",
        )
    for prev, cur in zip(names, names[1:]):
        if state_dict[f"{cur}.weight"].shape[1] != state_dict[f"{prev}.weight"].shape[0]:
            raise MergeError(
                f"{cur}.weight does not read the output of {prev}.weight "
                f"({tuple(state_dict[cur + '.weight'].shape)} after "
                f"{tuple(state_dict[prev + '.weight'].shape)}): not a sequential MLP.",
                fix="pass a PermutationSpec built for this architecture.",
            )
    bias = all(f"{n}.bias" in state_dict for n in names)
    return mlp_spec(names, bias=bias)


def residual_mlp_spec(
    embed: str, blocks: Iterable[tuple[str, str]], head: str, norms: Iterable[str] = ()
) -> PermutationSpec:
    """Spec of a residual MLP: one permutation ``P_stream`` for the residual stream.

    ``embed`` writes to the stream, each block ``(fc_in, fc_out)`` reads it through
    ``fc_in`` and writes back through ``fc_out`` (hidden permutation ``P_block_i``),
    ``head`` reads it; ``norms`` are LayerNorms on the stream (weight and bias).
    """
    axes: dict[str, AxisPerms] = {}
    axes.update(_linear(embed, "P_stream", None, True))
    for i, (fc_in, fc_out) in enumerate(blocks):
        axes.update(_linear(fc_in, f"P_block_{i}", "P_stream", True))
        axes.update(_linear(fc_out, "P_stream", f"P_block_{i}", True))
    axes.update(_linear(head, None, "P_stream", True))
    for norm in norms:
        axes[f"{norm}.weight"] = ("P_stream",)
        axes[f"{norm}.bias"] = ("P_stream",)
    return PermutationSpec(axes)


# Transformer MLP blocks: (regex of the layer prefix, {tensor suffix: axis perms}),
# where "H" marks the block's hidden (intermediate) axis.
_TRANSFORMER_MLPS: dict[str, tuple[str, dict[str, AxisPerms]]] = {
    # Llama / Mistral / Qwen: down(silu(gate x) * up x); nn.Linear weights are (out, in).
    "llama": (
        r"^(.*\.layers\.\d+\.mlp)\.gate_proj\.weight$",
        {
            "gate_proj.weight": ("H", None),
            "up_proj.weight": ("H", None),
            "down_proj.weight": (None, "H"),
            "gate_proj.bias": ("H",),
            "up_proj.bias": ("H",),
        },
    ),
    # GPT-2: Conv1D weights are stored (in, out).
    "gpt2": (
        r"^(.*\.h\.\d+\.mlp)\.c_fc\.weight$",
        {"c_fc.weight": (None, "H"), "c_fc.bias": ("H",), "c_proj.weight": ("H", None)},
    ),
    # BERT / RoBERTa: intermediate.dense (4d, d), output.dense (d, 4d).
    "bert": (
        r"^(.*\.layer\.\d+)\.intermediate\.dense\.weight$",
        {
            "intermediate.dense.weight": ("H", None),
            "intermediate.dense.bias": ("H",),
            "output.dense.weight": (None, "H"),
        },
    ),
}


def transformer_mlp_spec(state_dict: Mapping[str, Any]) -> PermutationSpec:
    """Spec permuting the hidden neurons of every transformer MLP block.

    Recognises Llama-style ``gate_proj/up_proj/down_proj``, GPT-2 ``c_fc/c_proj``
    (Conv1D, weights stored transposed) and BERT ``intermediate/output.dense``. One
    permutation per layer, ``<layer prefix>.mlp_hidden``; attention heads and the
    residual stream are not permuted.
    """
    axes: dict[str, AxisPerms] = {}
    for pattern, tensors in _TRANSFORMER_MLPS.values():
        regex = re.compile(pattern)
        for key in state_dict:
            match = regex.match(key)
            if not match:
                continue
            prefix = match.group(1)
            perm = f"{prefix}.mlp_hidden"
            for suffix, perms in tensors.items():
                name = f"{prefix}.{suffix}"
                if name in state_dict:
                    axes[name] = tuple(perm if p == "H" else None for p in perms)
    if not axes:
        raise MergeError(
            "No transformer MLP block found (looked for Llama gate_proj/up_proj/down_proj, "
            "GPT-2 mlp.c_fc/c_proj and BERT intermediate/output.dense).",
            fix="pass a PermutationSpec built for this architecture.",
        )
    return PermutationSpec(axes)


def infer_spec(state_dict: Mapping[str, Any]) -> PermutationSpec:
    """Spec for a known architecture: a transformer's MLP blocks, else a sequential MLP."""
    try:
        return transformer_mlp_spec(state_dict)
    except MergeError:
        pass
    try:
        return sequential_mlp_spec(state_dict)
    except MergeError as err:
        raise MergeError(
            "Cannot infer a permutation spec: the model is neither a known transformer "
            f"(Llama, GPT-2, BERT) nor a sequential MLP ({err.message})",
            fix="build a PermutationSpec for it (see docs/alignment.md) and pass it in.",
        ) from err
