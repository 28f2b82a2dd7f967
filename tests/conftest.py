"""Shared fixtures: small real Hugging Face checkpoints built once per test session.

The test-size MiniLM zoo (``zoo``) is built once per session into a temporary
MERGE3_HOME. Set ``MERGE3_ZOO_TEST_HOME=DIR`` to build into (and reuse) ``DIR`` instead:
the build is cached by its recipe, so iterating on the tests then costs no rebuild.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from merge3.testing.synthetic import build_family
from search.testing.setting import build_setting


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


@pytest.fixture(scope="session")
def merge3_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    fixed = os.environ.get("MERGE3_ZOO_TEST_HOME")
    home = Path(fixed) if fixed else tmp_path_factory.mktemp("merge3_home")
    old = os.environ.get("MERGE3_HOME")
    os.environ["MERGE3_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MERGE3_HOME", None)
    else:
        os.environ["MERGE3_HOME"] = old


@pytest.fixture(scope="session")
def zoo(merge3_home: Path) -> Path:
    """The built test-size zoo (its default location under the session's MERGE3_HOME)."""
    from merge3.zoo.build import build_zoo

    return build_zoo("test", progress=False)
