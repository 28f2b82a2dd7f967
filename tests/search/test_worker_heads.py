"""An encoder candidate is scored on task T with expert T's head (as the item banks'
populations were); tasks without an expert of their name use the base's heads."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file, save_file

from search.workers import WorkerSpec


def test_expert_heads_score_their_own_task(search_setting, tmp_path):
    tasks = dict(search_setting["tasks"])
    first, second = sorted(tasks)
    expert = tmp_path / f"expert_{first}"
    shutil.copytree(search_setting["experts"][first], expert)
    head_file = expert / "heads" / f"{first}.safetensors"
    tensors = load_file(str(head_file))
    from safetensors import safe_open

    with safe_open(str(head_file), "pt") as f:
        metadata = f.metadata()
    changed = {k: v + 1.0 for k, v in tensors.items()}
    save_file(changed, str(head_file), metadata=metadata)

    spec = WorkerSpec(str(search_setting["base"]), {first: str(expert), "other": str(expert)},
                      {k: str(v) for k, v in tasks.items()})
    assert spec.expert_heads() == {first: str(expert)}  # "other" names no task
    evaluator = spec.make_evaluator()
    assert torch.equal(evaluator.head(first).weight, changed["weight"])
    base_head = load_file(str(search_setting["base"] / "heads" / f"{second}.safetensors"))
    assert torch.equal(evaluator.head(second).weight, base_head["weight"])
