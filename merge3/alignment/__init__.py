"""Model alignment: permutation specs, Git Re-Basin weight matching, MergeMany, C²M³
and REPAIR.

References: Ainsworth et al., "Git Re-Basin", ICLR 2023; Crisostomi et al., "C²M³:
Cycle-Consistent Multi-Model Merging", NeurIPS 2024 (crisostomi/cycle-consistent-model-
merging); Jordan et al., "REPAIR", ICLR 2023.
"""

from __future__ import annotations

from merge3.alignment.c2m3 import C2M3Result, frank_wolfe_synchronized_matching
from merge3.alignment.merge import (
    ALIGNMENTS,
    AlignmentResult,
    UnknownAlignmentError,
    align_models,
    alignment_options,
    average_state_dicts,
    c2m3_merge,
    mergemany_merge,
    naive_merge,
    rebasin_merge,
)
from merge3.alignment.permute import (
    apply_permutations,
    identity_permutations,
    invert_permutation,
    permutation_matrix,
    random_permutations,
)
from merge3.alignment.spec import (
    PermutationSpec,
    infer_spec,
    mlp_spec,
    residual_mlp_spec,
    sequential_mlp_spec,
    transformer_mlp_spec,
)
from merge3.alignment.transformer_spec import transformer_stream_spec
from merge3.alignment.weight_matching import merge_many, to_numpy, weight_matching

__all__ = [
    "ALIGNMENTS",
    "AlignmentResult",
    "C2M3Result",
    "PermutationSpec",
    "UnknownAlignmentError",
    "align_models",
    "alignment_options",
    "apply_permutations",
    "average_state_dicts",
    "c2m3_merge",
    "frank_wolfe_synchronized_matching",
    "identity_permutations",
    "infer_spec",
    "invert_permutation",
    "merge_many",
    "mergemany_merge",
    "mlp_spec",
    "naive_merge",
    "permutation_matrix",
    "random_permutations",
    "rebasin_merge",
    "residual_mlp_spec",
    "sequential_mlp_spec",
    "to_numpy",
    "transformer_mlp_spec",
    "transformer_stream_spec",
    "weight_matching",
]
