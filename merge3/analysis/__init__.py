"""Diagnostics of task vectors: singular spectra and effective rank, singular task
interference (STI), and the task-vector ↔ gradient comparison; PNG plots.

References: Gargiulo et al., "Task Singular Vectors", CVPR 2025; Roy & Vetterli,
"The effective rank", EUSIPCO 2007; Zhou, Crisostomi et al. 2025 (task vectors as
gradients).
"""

from __future__ import annotations

from merge3.analysis.gradients import (
    GradientComparison,
    finetune_with_gradient_log,
    flat_cosine,
    full_batch_gradient,
)
from merge3.analysis.interference import (
    layer_interference,
    pairwise_interference,
    singular_task_interference,
    truncated_factors,
)
from merge3.analysis.spectra import (
    LayerSpectrum,
    effective_rank,
    layer_spectra,
    singular_spectrum,
    task_vector,
)

__all__ = [
    "GradientComparison",
    "LayerSpectrum",
    "effective_rank",
    "finetune_with_gradient_log",
    "flat_cosine",
    "full_batch_gradient",
    "layer_interference",
    "layer_spectra",
    "pairwise_interference",
    "singular_spectrum",
    "singular_task_interference",
    "task_vector",
    "truncated_factors",
]
