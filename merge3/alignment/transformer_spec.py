"""Permutation specs of whole decoder transformers: the residual stream and MLP blocks.

The residual stream of a pre-norm transformer can be permuted as a whole (one
permutation ``P_stream`` shared by the embeddings, every norm, every projection that
reads from or writes to the stream, and the LM head): RMSNorm and LayerNorm are
permutation-equivariant. Each MLP block's hidden units get their own permutation, as in
:func:`merge3.alignment.spec.transformer_mlp_spec`. Attention heads are not permuted.
This is the "one permutation per residual stream" of Git Re-Basin's ResNet specs
(Ainsworth et al., ICLR 2023), applied to transformers as in C²M³ (Crisostomi et al.,
NeurIPS 2024), whose ViT spec permutes the stream the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from merge3.alignment.spec import AxisPerms, PermutationSpec
from merge3.errors import MergeError

__all__ = ["transformer_stream_spec"]

S, H = "S", "H"  # placeholders: the stream and the layer's MLP hidden units

# (regex with an optional layer group, axes template); first match wins
_LLAMA: list[tuple[str, AxisPerms]] = [
    (r"^model\.embed_tokens\.weight$", (None, S)),
    (r"^model\.norm\.weight$", (S,)),
    (r"^lm_head\.weight$", (None, S)),
    (r"^model\.layers\.(\d+)\.(input|post_attention)_layernorm\.weight$", (S,)),
    (r"^model\.layers\.(\d+)\.self_attn\.[qkv]_proj\.weight$", (None, S)),
    (r"^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$", (S, None)),
    (r"^model\.layers\.(\d+)\.self_attn\.o_proj\.bias$", (S,)),
    (r"^model\.layers\.(\d+)\.mlp\.(gate|up)_proj\.weight$", (H, S)),
    (r"^model\.layers\.(\d+)\.mlp\.(gate|up)_proj\.bias$", (H,)),
    (r"^model\.layers\.(\d+)\.mlp\.down_proj\.weight$", (S, H)),
    (r"^model\.layers\.(\d+)\.mlp\.down_proj\.bias$", (S,)),
]
# GPT-2's Conv1D stores weights as (in, out)
_GPT2: list[tuple[str, AxisPerms]] = [
    (r"^transformer\.(wte|wpe)\.weight$", (None, S)),
    (r"^transformer\.ln_f\.(weight|bias)$", (S,)),
    (r"^lm_head\.weight$", (None, S)),
    (r"^transformer\.h\.(\d+)\.ln_[12]\.(weight|bias)$", (S,)),
    (r"^transformer\.h\.(\d+)\.attn\.c_attn\.weight$", (S, None)),
    (r"^transformer\.h\.(\d+)\.attn\.c_proj\.weight$", (None, S)),
    (r"^transformer\.h\.(\d+)\.attn\.c_proj\.bias$", (S,)),
    (r"^transformer\.h\.(\d+)\.mlp\.c_fc\.weight$", (S, H)),
    (r"^transformer\.h\.(\d+)\.mlp\.c_fc\.bias$", (H,)),
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.weight$", (H, S)),
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.bias$", (S,)),
]
_FAMILIES = {"llama": _LLAMA, "gpt2": _GPT2}


def transformer_stream_spec(state_dict: Mapping[str, Any]) -> PermutationSpec:
    """Spec of a Llama-style or GPT-2 causal LM: ``P_stream`` and ``layer<i>.mlp_hidden``.

    Raises :class:`MergeError` for other architectures (BERT encoders with task heads
    stored outside the model would need those heads permuted too, so they are left to
    :func:`~merge3.alignment.spec.transformer_mlp_spec`).
    """
    for rules in _FAMILIES.values():
        axes: dict[str, AxisPerms] = {}
        for key in state_dict:
            for pattern, template in rules:
                match = re.match(pattern, key)
                if match:
                    layer = match.group(1) if match.groups() and match.group(1).isdigit() else ""
                    axes[key] = tuple(
                        "P_stream" if p == S else f"layer{layer}.mlp_hidden" if p == H else None
                        for p in template
                    )
                    break
        if any("mlp_hidden" in str(v) for v in axes.values()):
            spec = PermutationSpec(axes)
            spec.validate(state_dict)
            return spec
    raise MergeError(
        "No Llama-style (model.layers.*) or GPT-2 (transformer.h.*) decoder found.",
        fix="use transformer_mlp_spec() for the MLP blocks only, or build a PermutationSpec.",
    )
