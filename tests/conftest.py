"""Shared fixtures: small real Hugging Face checkpoints built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from merge3.synthetic import build_family
from tests.search.setting import build_setting


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def llama_family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama base and three 'experts' (base + structured deltas), fp32."""
    return build_family(tmp_path_factory.mktemp("llama"), "llama", experts=3, seed=0)


@pytest.fixture(scope="session")
def gpt2_family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny GPT-2 base and two experts, stored in bfloat16 and sharded."""
    return build_family(tmp_path_factory.mktemp("gpt2"), "gpt2", experts=2, seed=1,
                        dtype=torch.bfloat16, shard_size="40KB")


@pytest.fixture(scope="session")
def search_setting(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_setting(tmp_path_factory.mktemp("search_setting"))


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session, on 127.0.0.1."""
    from search.workers import init_ray

    init_ray(None, num_cpus=2)
    import ray

    yield ray
    ray.shutdown()
