"""Session fixtures: tiny real models (merge3.zoo.tiny) and task files, built once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from merge3.testing.eval_fixtures import TOPIC_LABELS, build_models, build_tasks
from merge3.zoo import build_tiny_encoder

MERGE_COEFFICIENTS = (0.3, 0.7)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_models")
    built = build_models(root)
    built["encoder_b"] = build_tiny_encoder(
        root / "encoder_b", {"topic": TOPIC_LABELS, "parity": ["even", "odd"]}, seed=7
    )
    return built


@pytest.fixture(scope="session")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tasks(tmp_path_factory.mktemp("eval_tasks"))


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def linear_merge(a: Path, b: Path) -> dict[str, torch.Tensor]:
    """0.3 * a + 0.7 * b, tensor by tensor (the 'candidate merge' of the tests)."""
    state_a, state_b = _state(a), _state(b)
    wa, wb = MERGE_COEFFICIENTS
    return {k: wa * state_a[k] + wb * state_b[k] for k in state_a}


def save_merged(base: Path, state: dict[str, torch.Tensor], out: Path) -> Path:
    """A full checkpoint directory: ``base``'s config, tokenizer and heads, merged weights."""
    from safetensors.torch import save_file

    shutil.copytree(base, out)
    metadata = {"format": "pt"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata=metadata)
    return out


@pytest.fixture(scope="session")
def merged_gpt2(models, tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    """(merged state dict, the same merge saved to disk as a checkpoint)."""
    state = linear_merge(models["gpt2_a"], models["gpt2_b"])
    out = save_merged(models["gpt2_a"], state, tmp_path_factory.mktemp("merged") / "gpt2_merged")
    return state, out
