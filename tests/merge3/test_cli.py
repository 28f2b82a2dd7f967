from __future__ import annotations

import subprocess
import sys

import torch

from merge3.checkpoints import Checkpoint
from merge3.cli import main


def test_merge_verb_end_to_end(llama_family, tmp_path, capsys):
    recipe = tmp_path / "ties.yaml"
    recipe.write_text(
        "merge_method: ties\n"
        f"base_model: {llama_family['base']}\n"
        "models:\n"
        f"  - model: {llama_family['base']}\n"  # mergekit lists the base too
        f"  - model: {llama_family['expert_1']}\n    parameters: {{weight: 1.0, density: 0.5}}\n"
        f"  - model: {llama_family['expert_2']}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
        "parameters: {normalize: true, int8_mask: true}\n"
        "dtype: bfloat16\n"
    )
    out = tmp_path / "merged"
    assert main(["merge", str(recipe), str(out), "--out-shard-size", "30KB", "-q"]) == 0
    assert "merged (ties)" in capsys.readouterr().out
    merged = Checkpoint(out)
    assert (out / "model.safetensors.index.json").exists()
    assert (out / "merge3_recipe.yaml").read_text().startswith("merge_method: ties")
    assert all(merged.info(n).dtype == torch.bfloat16 for n in merged.names())
    # rerunning into the same directory needs --overwrite
    assert main(["merge", str(recipe), str(out), "-q"]) == 2
    assert main(["merge", str(recipe), str(out), "-q", "--overwrite"]) == 0


def test_methods_lists_every_method(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in ("linear", "slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties",
                 "breadcrumbs", "consensus", "tsv_c", "tsv_m", "iso_c", "iso_cts"):
        assert f"\n{name} " in "\n" + text
    assert "arxiv.org/abs/2412.00081" in text


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "merge3.cli", "merge", "--help"],
                            capture_output=True, text=True, check=True)
    assert "example:" in result.stdout and "merge_method: ties" in result.stdout


def test_demo_runs(tmp_path):
    assert main(["demo", "--merges", "--out", str(tmp_path / "demo"), "-q"]) == 0
    merged = sorted(p.name for p in (tmp_path / "demo" / "merges" / "merged").iterdir())
    from merge3.methods import METHODS

    expected = [n for n in METHODS if not METHODS.get(n).align]
    assert "tsv_m" in merged and "iso_cts" in merged and sorted(merged) == sorted(expected)


def _leaf_parsers(parser, path=()):
    """Every verb's parser (nested verbs included), with its command path."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, (*path, name))


def test_every_verb_has_help_with_an_example():
    from merge3.cli import build_parser

    leaves = dict(_leaf_parsers(build_parser()))
    assert len(leaves) >= 14  # merge, eval, search, irt calibrate, zoo build, ...
    missing = [" ".join(path) for path, sub in leaves.items()
               if "example" not in (sub.format_help() or "").lower()
               or "merge3 " + path[0] not in sub.format_help()]
    assert not missing, f"verbs without an example in --help: {missing}"
