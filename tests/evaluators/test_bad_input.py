"""Bad models and backends fail with errors that name the culprit and the fix."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from evaluators.backends import make_evaluator
from evaluators.errors import EvaluatorError, MissingDependencyError, ModelLoadError
from evaluators.hf import HFCausalLM, HFEncoder
from evaluators.tasks import load_task
from merge3.errors import UnknownNameError


def test_model_without_tokenizer(models, tmp_path) -> None:
    bare = tmp_path / "no_tokenizer"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(models["gpt2_a"] / name, bare / name)
    with pytest.raises(ModelLoadError) as err:
        HFCausalLM(bare)
    assert "no tokenizer" in str(err.value) and "no_tokenizer" in str(err.value)
    assert "save_pretrained" in str(err.value)


def test_not_a_model_directory(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        make_evaluator("hf", tmp_path)


def test_vllm_not_installed_gives_the_install_hint(models) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.fail("vLLM is importable in the main venv; it must live in .venv-vllm only")
    with pytest.raises(MissingDependencyError) as err:
        make_evaluator("vllm", models["gpt2_a"])
    assert "scripts/setup_vllm.sh" in str(err.value) and "pip install vllm" in str(err.value)


def test_unknown_backend_suggests_the_closest(models) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'vllm'"):
        make_evaluator("vlm", models["gpt2_a"])


def test_missing_head_lists_the_heads(models, tasks, tmp_path) -> None:
    shutil.copy(tasks["topic"].parent / "topic.jsonl", tmp_path / "topic.jsonl")
    spec = tasks["topic"].read_text().replace("task: topic", "task: sentiment")
    (tmp_path / "sentiment.yaml").write_text(spec)
    items = load_task(tmp_path / "sentiment.yaml").items
    with pytest.raises(ModelLoadError) as err:
        HFEncoder(models["encoder"]).evaluate(items)
    assert "sentiment" in str(err.value) and "parity, topic" in str(err.value)


def test_wrong_item_format_for_the_model(models, tasks) -> None:
    with pytest.raises(EvaluatorError, match="encoder scores only classification"):
        HFEncoder(models["encoder"]).evaluate(load_task(tasks["arith_gen"], limit=1).items)
    with pytest.raises(EvaluatorError, match="causal LM scores only"):
        HFCausalLM(models["gpt2_a"]).evaluate(load_task(tasks["topic"], limit=1).items)
