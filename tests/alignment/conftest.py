"""Shared fixtures: a small zoo of real digits MLPs trained from different seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from merge3.zoo.digits import (
    DigitsConfig,
    DigitsData,
    build_digits_zoo,
    load_digits_data,
    load_digits_model,
)

# small but real: each model trains in about a second and reaches > 90% test accuracy
FAST_CONFIG = DigitsConfig(hidden=32, depth=3, epochs=15)


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas():
    """Alignment multiplies small matrices; on a shared CPU a multi-threaded OpenBLAS
    spin-waits and runs many times slower than one thread."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def digits_data() -> DigitsData:
    return load_digits_data(FAST_CONFIG.split_seed)


@pytest.fixture(scope="session")
def digits_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_digits_zoo(tmp_path_factory.mktemp("digits"), seeds=range(3), config=FAST_CONFIG)


@pytest.fixture(scope="session")
def digits_state_dicts(digits_paths: list[Path]) -> list[dict[str, torch.Tensor]]:
    return [load_digits_model(p)[0].state_dict() for p in digits_paths]
