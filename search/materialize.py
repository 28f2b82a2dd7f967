"""Materialise candidate merges tensor by tensor, reusing what does not depend on the genome.

A search worker builds hundreds of merges of the same base and experts. It holds them
once, **in their checkpoints' own dtype** and, when given ``Checkpoint``s (the worker's
case), not in the process at all: each tensor is read when it is merged (a positioned
read from the OS page cache, which every process on the node shares), so a worker's own
memory holds the resident evaluator and one tensor's working set, never a float32 copy
of the models. One :class:`merge3.executor.MergeCache` keeps the genome-independent
work (TSV-M's orthogonalised factors, the alignment of the experts, which tensors no
expert changed), computed for the first candidate and reused.

``stream(recipe)`` yields the candidate one tensor at a time, merged in float32 on the
worker's device and cast to the output dtype, for the evaluator to copy straight into
its resident model (``Evaluator.load_weights`` takes the stream): the extra memory of a
candidate is one tensor's working set, not a model. Each candidate is
:func:`merge3.executor.merge_model` of its decoded recipe — the same code and numbers as
``merge3 merge`` of that recipe (a test checks every method bit for bit).

:func:`expert_sources` opens the experts as the config's ``expert_storage`` says: their
checkpoints (``files``), or TSV-C low-rank task vectors rebuilt on the base as each tensor
is read (``lowrank``, :class:`merge3.lowrank.LowRankExpert`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from merge3.checkpoints import DTYPES
from merge3.executor import (
    MergeCache,
    StateDict,
    TensorSource,
    count_layers,
    merge_job,
    merge_model,
)
from merge3.recipe import parse_recipe

__all__ = ["Materializer", "expert_sources"]


def expert_sources(base: TensorSource, paths: Sequence[str],
                   storage: Any = None) -> list[TensorSource]:
    """The experts at ``paths`` as tensor sources, held as ``storage`` (an
    ``ExpertStorageSpec``; None: ``files``) says."""
    from merge3.checkpoints import Checkpoint

    if storage is None or storage.kind == "files":
        return [Checkpoint(p) for p in paths]
    from merge3.lowrank import LowRankExpert

    experts: list[TensorSource] = []
    for path in paths:
        checkpoint = Checkpoint(path)
        experts.append(LowRankExpert(base, checkpoint, storage.rank, dtype=storage.dtype,
                                     label=f"{path} (rank {storage.rank})"))
        checkpoint.close()  # the factors are all it needs now
    return experts


def _source(model: Mapping[str, torch.Tensor] | TensorSource, label: str) -> TensorSource:
    return StateDict(dict(model), label) if isinstance(model, Mapping) else model


class Materializer:
    """Base + experts held once; ``stream(recipe)`` yields the merged tensors, and
    ``materialize(recipe)`` collects them into a state dict.

    ``base`` and ``experts`` are ``Checkpoint``s (read tensor by tensor as merged) or
    state dicts, kept in their own dtype. ``device``: where each tensor is merged
    (default: where it is stored, the CPU).
    """

    def __init__(
        self,
        base: Mapping[str, torch.Tensor] | TensorSource,
        experts: Sequence[Mapping[str, torch.Tensor] | TensorSource],
        *,
        num_layers: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.base = _source(base, "base")
        self.experts = [_source(e, f"expert {i}") for i, e in enumerate(experts)]
        self.names = list(self.base.names())
        self.num_layers = num_layers or count_layers(self.names)
        self.device = device
        self.cache = MergeCache()  # genome-independent work, computed once

    def stream(self, recipe: Mapping[str, Any], *, seed: int | None = None
               ) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` of a decoded recipe's merge (its experts in this worker's
        order), one tensor at a time, in the base's tensor order."""
        parsed = parse_recipe(dict(recipe), source="candidate recipe")
        out_dtype = DTYPES[parsed.output_dtype] if parsed.output_dtype else None
        job = merge_job(parsed, num_layers=self.num_layers, out_dtype=out_dtype)
        if seed is not None:
            job = replace(job, seed=seed)
        return merge_model(job, self.base, self.experts, self.names, device=self.device,
                           cache=self.cache)

    def materialize(self, recipe: Mapping[str, Any], *, seed: int | None = None
                    ) -> dict[str, torch.Tensor]:
        """The merged state dict of a decoded recipe (a whole model in memory: for tests
        and exports; a worker streams instead)."""
        return dict(self.stream(recipe, seed=seed))
