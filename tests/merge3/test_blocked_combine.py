"""The task-arithmetic family combines in blocks after trimming: any block size gives the
same bits as one block holding the whole tensor (the operations per entry are the same)."""

from __future__ import annotations

import pytest
import torch

from merge3.methods import get_method, task_arithmetic


def _inputs(shape: tuple[int, ...]) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    base = torch.randn(shape, generator=generator).bfloat16().float()
    experts = [(base + 0.05 * torch.randn(shape, generator=generator)).bfloat16().float()
               for _ in range(3)]
    return experts, base


@pytest.mark.parametrize("method,params", [
    ("ties", {"density": [0.5, 0.3, 0.9]}),
    ("dare_ties", {"density": [0.5, 0.3, 0.9]}),
    ("dare_linear", {"density": [0.5, 0.3, 0.9]}),
    ("breadcrumbs", {"density": [0.5, 0.3, 0.9], "gamma": [0.01, 0.1, 0.0]}),
    ("breadcrumbs_ties", {"density": [0.5, 0.3, 0.9], "gamma": [0.01, 0.1, 0.0]}),
    ("della", {"density": [0.5, 0.3, 0.7], "epsilon": [0.1, 0.1, 0.2]}),
])
def test_blocks_change_no_bit(method, params, monkeypatch):
    experts, base = _inputs((37, 211))  # 7807 entries: 7 full blocks of 1000 and a ragged one
    merge = get_method(method)
    settings = {"weight": [0.6, 0.4, 0.3], **params, "lambda": 0.9}

    def run() -> torch.Tensor:
        generator = torch.Generator().manual_seed(3) if merge.wants_generator else None
        extra = {"generator": generator} if generator is not None else {}
        return merge([x.clone() for x in experts], base.clone(), **settings, **extra)

    whole = run()
    monkeypatch.setattr(task_arithmetic, "BLOCK_ELEMENTS", 1000)
    blocked = run()
    assert torch.equal(whole, blocked)
    assert not torch.equal(whole, base)  # the merge did something
