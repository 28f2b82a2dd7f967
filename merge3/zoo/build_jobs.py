"""Jobs that run in the build's worker processes (one torch thread each, both cores).

Each worker holds the base encoder and, once the experts exist, their weights; jobs
return pooled features (N × 384), never logits: the parent applies each task's head,
so one encoder pass serves every head. ``spawn`` workers keep torch's thread pools
out of ``fork``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from merge3.zoo.encoder import Batches, features, load_encoder
from merge3.zoo.finetune import FinetuneConfig, LinearProbe, finetune

__all__ = ["init_worker", "features_job", "finetune_job", "merge_job"]

_STATE: dict[str, Any] = {}


def init_worker(eval_batches: dict[str, Batches], threads: int = 1) -> None:
    """Per worker: one thread, the base encoder, the evaluation batches."""
    torch.set_num_threads(threads)
    _STATE["eval"] = eval_batches
    _STATE["model"] = load_encoder()
    _STATE["base"] = {k: v.clone() for k, v in _STATE["model"].state_dict().items()}
    _STATE["experts"] = {}


def _load(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = _STATE["model"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def features_job(batches: Batches | None = None, splits: tuple[str, ...] = ()) -> dict[str, Any]:
    """Base-encoder features of ``batches`` and of the named evaluation splits."""
    start = time.process_time()
    model = _load(_STATE["base"])
    out: dict[str, Any] = {split: features(model, _STATE["eval"][split]) for split in splits}
    if batches is not None:
        out["batches"] = features(model, batches)
    out["cpu"] = time.process_time() - start
    return out


def finetune_job(
    task: str,
    input_ids: list[list[int]],
    labels: list[int],
    probe: LinearProbe,
    cfg: FinetuneConfig,
    snapshots: tuple[int, ...],
    out_dir: str,
) -> dict[str, Any]:
    """Fine-tune the base on one task; save the encoder to ``out_dir``.

    Returns the expert's head, its test (and validation) features, and for each snapshot
    step the head and test features of the checkpoint at that step.
    """
    start = time.process_time()
    model = _load(_STATE["base"])
    snaps: dict[int, dict[str, Any]] = {}

    def on_snapshot(step: int, m: torch.nn.Module, head: LinearProbe) -> None:
        snaps[step] = {"head": head, "test": features(m, _STATE["eval"]["test"])}

    head = finetune(model, probe, input_ids, labels, cfg, snapshot_at=snapshots,
                    on_snapshot=on_snapshot)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    result = {
        "task": task,
        "head": head,
        "test": features(model, _STATE["eval"]["test"]),
        "validation": features(model, _STATE["eval"]["validation"]),
        "snapshots": snaps,
        "cpu": time.process_time() - start,
    }
    _load(_STATE["base"])  # the model object is shared by later jobs
    return result


def merge_job(spec, expert_dirs: dict[str, str], splits: tuple[str, ...]) -> dict[str, Any]:
    """Merge the experts named by ``spec`` in memory and featurise ``splits``."""
    from safetensors.torch import load_file

    from merge3.zoo.merges import merge_state

    start = time.process_time()
    experts = _STATE["experts"]
    for task, path in expert_dirs.items():
        if task not in experts:
            loaded = load_file(str(Path(path) / "model.safetensors"))
            # save_pretrained may drop buffers; fill them from the base.
            experts[task] = {k: loaded.get(k, v) for k, v in _STATE["base"].items()}
    merged = merge_state(spec, _STATE["base"], experts)
    model = _load(merged)
    out: dict[str, Any] = {split: features(model, _STATE["eval"][split]) for split in splits}
    out["cpu"] = time.process_time() - start
    return out
