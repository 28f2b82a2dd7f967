"""merge3 against the real lm-evaluation-harness 0.4.13, item by item.

lm-eval runs in its own venv (``.venv-lmeval``, scripts/setup_lmeval.sh) with
``--log_samples`` on two tiny models -- a GPT-2 whose tokenizer adds nothing and a Llama
whose tokenizer prepends BOS -- and lm-eval task YAMLs (multiple_choice with random and
first_n few-shot, Jinja, include; generate_until with two filter pipelines and
exact_match options). merge3 loads the same YAMLs and must agree on every item: the
prompts, log-likelihoods (1e-4), acc, acc_norm, generations, filtered answers and
exact_match; and ``merge3 irt`` must read both logs as the same models and items. Never
skipped: a missing .venv-lmeval is a failure that says how to create it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from evaluators.hf import HFCausalLM
from evaluators.tasks import load_task
from tests.evaluators.lm_eval_setting import add_bos_tokenizer, build_setting

REPO = Path(__file__).resolve().parents[2]
LM_EVAL = REPO / ".venv-lmeval" / "bin" / "lm_eval"
MODELS = ("gpt2_a", "llama_bos")


def _tasks(name: str) -> list[str]:
    return ["mc", "mc2", f"gen_{name}", f"gen_fs_{name}"]


def _run_lm_eval(model_dir: Path, task_dir: Path, tasks: list[str], out: Path, home: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(home), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [str(LM_EVAL), "--model", "hf", "--model_args",
               f"pretrained={model_dir},dtype=float32", "--tasks", ",".join(tasks),
               "--include_path", str(task_dir), "--device", "cpu", "--batch_size", "8",
               "--log_samples", "--output_path", str(out)]
    # cwd = the task folder: lm-eval reads relative data_files from the working directory
    done = subprocess.run(command, cwd=task_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _samples(out: Path, task: str) -> dict[tuple[str, str], dict]:
    """{(doc_id, filter): record} of lm-eval's samples file for ``task``."""
    [path] = out.rglob(f"samples_{task}_*.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(str(r["doc_id"]), r["filter"]): r for r in records}


@pytest.fixture(scope="module")
def setting(models, tmp_path_factory):
    if not LM_EVAL.exists():
        pytest.fail(f"{LM_EVAL} is missing: the real lm-eval runs in its own venv. Run "
                    "`bash scripts/setup_lmeval.sh` (scripts/test.sh does it).")
    root = tmp_path_factory.mktemp("lm_eval")
    chosen = {"gpt2_a": models["gpt2_a"],
              "llama_bos": add_bos_tokenizer(models["llama"], root / "models" / "llama_bos")}
    task_dir = build_setting(root / "tasks", chosen)
    out = root / "lm_eval_out"
    for name, model_dir in chosen.items():
        _run_lm_eval(model_dir, task_dir, [f"fid_{t}" for t in _tasks(name)], out, root / "hf")
    return chosen, task_dir, out


def _lm_eval_folder(out: Path, model_dir: Path) -> Path:
    return out / str(model_dir).replace("/", "__")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_multiple_choice_equals_lm_eval(setting, name) -> None:
    chosen, task_dir, out = setting
    evaluator = HFCausalLM(chosen[name], batch_size=16)
    for yaml in ("mc", "mc2"):
        task = load_task(task_dir / f"{yaml}.yaml")
        results = evaluator.evaluate(task.items)
        records = _samples(_lm_eval_folder(out, chosen[name]), task.name)
        assert len(records) == len(results) == 40
        max_diff, old_norm_differs = 0.0, 0
        for item, result in zip(task.items, results, strict=True):
            record = records[(item.id, "none")]
            arguments = [record["arguments"][f"gen_args_{j}"] for j in range(len(item.choices))]
            assert [a["arg_0"] for a in arguments] == [item.prompt] * len(item.choices)
            assert [a["arg_1"] for a in arguments] == list(item.choices)
            theirs = [float(r[0][0]) for r in record["resps"]]
            max_diff = max(max_diff, *(abs(a - b) for a, b in zip(
                theirs, result.details["loglikelihoods"], strict=True)))
            assert (result.metrics["acc"], result.metrics["acc_norm"]) == (
                record["acc"], record["acc_norm"]), (task.name, item.id)
            # merge3's old rule (length of delimiter + choice) disagrees somewhere
            old = max(range(len(theirs)), key=lambda j: theirs[j] / len(item.choices[j]))
            old_norm_differs += float(old == item.target) != record["acc_norm"]
        assert max_diff < 1e-4, (task.name, max_diff)
        assert task.spec.main_metric == record["metrics"][0]
        if yaml == "mc2":  # ": " delimiter: 2 extra characters for every choice
            assert old_norm_differs > 0, "the test data should tell the two acc_norm apart"


@pytest.mark.slow
def test_bos_is_added_as_lm_eval_adds_it(setting) -> None:
    """Without the tokenizer's BOS (merge3 before) the log-likelihoods are off."""
    chosen, task_dir, out = setting
    task = load_task(task_dir / "mc.yaml", limit=10)
    without = HFCausalLM(chosen["llama_bos"], add_bos_token=False).evaluate(task.items)
    records = _samples(_lm_eval_folder(out, chosen["llama_bos"]), "fid_mc")
    gaps = [abs(float(r[0][0]) - ours)
            for item, result in zip(task.items, without, strict=True)
            for r, ours in zip(records[(item.id, "none")]["resps"],
                               result.details["loglikelihoods"], strict=True)]
    assert max(gaps) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_generation_filters_and_exact_match_equal_lm_eval(setting, name) -> None:
    chosen, task_dir, out = setting
    evaluator = HFCausalLM(chosen[name], batch_size=16)
    for yaml in (f"gen_{name}", f"gen_fs_{name}"):
        task = load_task(task_dir / f"{yaml}.yaml")
        results = evaluator.evaluate(task.items)
        records = _samples(_lm_eval_folder(out, chosen[name]), task.name)
        assert len(records) == 2 * len(results) == 32  # one record per doc and filter
        scores = []
        for item, result in zip(task.items, results, strict=True):
            for filt in ("first-word", "whole"):
                record = records[(item.id, filt)]
                assert record["arguments"]["gen_args_0"]["arg_0"] == item.prompt
                assert record["resps"][0][0] == result.details["generation"], item.id
                assert record["filtered_resps"][0] == result.details["answers"][filt]
                assert record["exact_match"] == result.metrics[f"exact_match,{filt}"]
            assert result.score == records[(item.id, "first-word")]["exact_match"]
            scores.append(result.score)
        if yaml == f"gen_{name}":  # targets are the model's own answers on even rows
            assert scores[0::2] == [1.0] * 8 and scores[1::2] == [0.0] * 8


@pytest.mark.slow
def test_irt_reads_merge3_and_lm_eval_logs_as_the_same_models(setting, tmp_path) -> None:
    from irt.loaders import load_lm_eval_samples, load_merge3_eval_logs
    from merge3.cli import main

    chosen, task_dir, out = setting
    merge3_out = tmp_path / "merge3_out"
    for name, model_dir in chosen.items():
        yamls = ",".join(str(task_dir / f"{t}.yaml") for t in _tasks(name))
        assert main(["eval", str(model_dir), "--tasks", yamls, "--log-samples",
                     str(merge3_out), "--no-progress"]) == 0
    ours = load_merge3_eval_logs(merge3_out, binarize=False)
    theirs = load_lm_eval_samples(out, binarize=False)
    assert sorted(ours.model_ids) == sorted(theirs.model_ids) == list(MODELS)
    assert sorted(ours.item_ids) == sorted(theirs.item_ids)
    rows = [theirs.model_ids.index(m) for m in ours.model_ids]
    aligned = theirs.select_models(rows).aligned_to(list(ours.item_ids))
    assert np.isfinite(ours.scores).sum() == 2 * (2 * 40 + 2 * 16)  # per model: 2 MC, 2 gen
    np.testing.assert_array_equal(aligned.scores, ours.scores)  # missing cells in both
