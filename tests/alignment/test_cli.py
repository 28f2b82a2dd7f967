"""`merge3 align` writes aligned checkpoints that compute what the originals compute."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from merge3.alignment.cli import register
from merge3.zoo.digits import load_digits_model


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="merge3")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("method", ["c2m3", "rebasin", "mergemany"])
def test_align_writes_models_and_average(digits_paths, digits_data, tmp_path, method) -> None:
    out = tmp_path / "out"
    argv = ["align", *map(str, digits_paths), "--out", str(out), "--method", method]
    assert _run(argv + ["--max-iter", "30"]) == 0
    summary = json.loads((out / "alignment.json").read_text())
    assert summary["method"] == method and len(summary["perms"]) == 3
    if method == "c2m3":
        assert len(summary["objective"]) >= 2
    for i, path in enumerate(digits_paths):
        original, _ = load_digits_model(path)
        aligned, _ = load_digits_model(out / "aligned" / f"model_{i}")  # config.json copied
        with torch.no_grad():
            torch.testing.assert_close(aligned(digits_data.x_test), original(digits_data.x_test),
                                       atol=1e-5, rtol=1e-5)
    average = load_file(str(out / "average" / "model.safetensors"))
    aligned = [load_file(str(out / "aligned" / f"model_{i}" / "model.safetensors"))
               for i in range(3)]
    for name, value in average.items():
        torch.testing.assert_close(value, torch.stack([a[name] for a in aligned]).mean(0))


def test_anchor_keeps_the_first_models_order(digits_paths, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["align", *map(str, digits_paths), "--out", str(out), "--anchor", "--max-iter", "30"]
    assert _run(argv) == 0
    perms = json.loads((out / "alignment.json").read_text())["perms"]
    assert all(p == sorted(p) for p in perms[0].values())  # model 0 is the universe
    assert any(p != sorted(p) for model in perms[1:] for p in model.values())


def test_align_with_repair_writes_a_better_average(digits_paths, digits_data, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["align", *map(str, digits_paths), "--out", str(out), "--method", "rebasin"]
    assert _run(argv + ["--repair"]) == 0
    average, _ = load_digits_model(out / "average")
    repaired, _ = load_digits_model(out / "average_repaired")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy
        plain = loss(average(digits_data.x_test), digits_data.y_test)
        fixed = loss(repaired(digits_data.x_test), digits_data.y_test)
    assert fixed < plain


def test_repair_refuses_models_without_data(tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    paths = []
    for seed in range(2):
        torch.manual_seed(seed)
        path = tmp_path / f"m{seed}.safetensors"
        save_file({"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4),
                   "b.weight": torch.randn(2, 4)}, str(path))
        paths.append(str(path))
    assert _run(["align", *paths, "--out", str(tmp_path / "out"), "--method", "rebasin"]) == 0
    assert _run(["align", *paths, "--out", str(tmp_path / "o2"), "--repair"]) == 2
    assert "--repair" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()  # refused before writing anything
    assert _run(["align", *paths, "--out", str(tmp_path / "o3"), "--method", "mergemany",
                 "--anchor"]) == 2
    assert "--anchor" in capsys.readouterr().err


def test_align_reports_a_missing_model(digits_paths, tmp_path, capsys) -> None:
    code = _run(["align", str(digits_paths[0]), str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Fix:" in err


def test_help_has_an_example(capsys) -> None:
    with pytest.raises(SystemExit):
        _run(["align", "--help"])
    assert "merge3 align" in capsys.readouterr().out


def test_align_hugging_face_checkpoints(tmp_path) -> None:
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=16)
    dirs = []
    for seed in range(3):
        torch.manual_seed(seed)
        path = tmp_path / f"gpt2_{seed}"
        GPT2LMHeadModel(config).save_pretrained(path)
        dirs.append(path)
    out = tmp_path / "out"
    assert _run(["align", *map(str, dirs), "--out", str(out), "--max-iter", "20"]) == 0
    tokens = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    for i, path in enumerate(dirs):
        original = AutoModelForCausalLM.from_pretrained(path).eval()
        aligned = AutoModelForCausalLM.from_pretrained(out / "aligned" / f"model_{i}").eval()
        with torch.no_grad():
            torch.testing.assert_close(aligned(input_ids=tokens).logits,
                                       original(input_ids=tokens).logits,
                                       atol=1e-5, rtol=1e-5)
    perms = json.loads((out / "alignment.json").read_text())["perms"]
    assert any(p != sorted(p) for model in perms for p in model.values())  # units moved
    assert (out / "average" / "config.json").is_file()
    AutoModelForCausalLM.from_pretrained(out / "average")
