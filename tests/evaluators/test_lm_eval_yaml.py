"""lm-eval task YAMLs read as they are, or refused naming the key; Jinja in merge3 prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.errors import TaskSpecError
from evaluators.lm_eval_tasks import FewshotSampler
from evaluators.tasks import load_task

ROWS = [{"q": f"q{i}", "choices": ["yes", "no", "maybe"], "label": i % 3, "ans": str(i)}
        for i in range(6)]

BASE = """\
task: t
dataset_path: json
dataset_kwargs:
  data_files:
    test: rows.jsonl
test_split: test
doc_to_text: "Question: {{q}}"
"""


def _task(tmp_path: Path, body: str, name: str = "t.yaml") -> Path:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / name).write_text(body)
    return tmp_path / name


def _refused(tmp_path: Path, body: str, match: str) -> str:
    with pytest.raises(TaskSpecError, match=match) as err:
        load_task(_task(tmp_path, body))
    return str(err.value)


def test_multiple_choice_yaml_becomes_items(tmp_path) -> None:
    path = _task(tmp_path, BASE + "output_type: multiple_choice\ndoc_to_choice: choices\n"
                 "doc_to_target: label\ndescription: 'About {{ans}}: '\n")
    task = load_task(path)
    item = task.items[4]
    assert (task.name, item.id, item.format) == ("t", "4", "multiple_choice")
    assert item.prompt == "About 4: Question: q4"
    assert item.choices == (" yes", " no", " maybe") and item.choice_texts == ("yes", "no",
                                                                                 "maybe")
    assert item.target == 1 and item.metric == "acc"  # lm-eval's default metrics: acc, acc_norm


def test_generate_until_yaml_keeps_filters_and_options(tmp_path) -> None:
    body = BASE + """\
doc_to_target: ans
generation_kwargs: {until: "END", max_new_tokens: 7, temperature: 0.0}
metric_list: [{metric: exact_match, ignore_punctuation: true}]
filter_list:
  - name: num
    filter: [{function: regex, regex_pattern: "(\\\\d+)", fallback: none}, {function: take_first}]
"""
    item = load_task(_task(tmp_path, body)).items[0]
    spec = item.generation
    assert (spec.max_new_tokens, spec.stop, spec.scoring) == (7, ("END",), "lm_eval")
    assert spec.match.ignore_punctuation and spec.filters[0].name == "num"
    assert dict(spec.filters[0].steps[0].args) == {"regex_pattern": r"(\d+)", "fallback": "none"}
    # no generation_kwargs: lm-eval's defaults (until the few-shot delimiter, 256 tokens)
    plain = load_task(_task(tmp_path, BASE + "doc_to_target: ans\n", "p.yaml")).items[0]
    assert (plain.generation.stop, plain.generation.max_new_tokens) == (("\n\n",), 256)


@pytest.mark.parametrize(("extra", "match"), [
    ("process_docs: !function utils.process_docs\n",
     r"process_docs is a Python function \(!function utils.process_docs\)"),
    ("doc_to_target: !function utils.target\n", r"doc_to_target is a Python function"),
    ("output_type: loglikelihood_rolling\n", r"output_type 'loglikelihood_rolling' is not"),
    ("gen_prefix: 'Answer:'\n", r"lm-eval key 'gen_prefix' is not supported"),
    ("doc_to_target: ans\nbogus_key: 1\n", r"lm-eval key 'bogus_key' is not supported"),
    ("doc_to_target: ans\ngeneration_kwargs: {do_sample: true, temperature: 0.7}\n",
     r"sampling is not supported"),
    ("doc_to_target: ans\ngeneration_kwargs: {untill: [x]}\n",
     r"'generation_kwargs.untill' is not supported \(Did you mean 'until'\?\)"),
    ("doc_to_target: ans\nmetric_list: [{metric: bleu}]\n", r"metric_list.0.metric"),
    ("output_type: multiple_choice\ndoc_to_choice: choices\ndoc_to_target: label\n"
     "metric_list: [{metric: exact_match}]\n", r"metric 'exact_match' is not available"),
    ("doc_to_target: ans\nfilter_list: [{name: f, filter: [{function: regex}]}]\n",
     r"must end with .*take_first"),
    ("doc_to_target: ans\nrepeats: 4\n", r"'repeats'"),
])
def test_unsupported_lm_eval_keys_are_refused_by_name(tmp_path, extra, match) -> None:
    _refused(tmp_path, BASE + extra, match)


def test_dataset_errors_are_clear(tmp_path, monkeypatch) -> None:
    import datasets

    _refused(tmp_path, BASE.replace("rows.jsonl", "missing.jsonl") + "doc_to_target: ans\n",
             r"data file 'missing.jsonl' exists neither in the working directory")
    _refused(tmp_path, BASE + "doc_to_target: ans\ndataset_kwargs: {split: test}\n",
             r"dataset_kwargs key 'split' is not supported")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no 25 s of retries
    body = "task: h\ndataset_path: some-org/some-dataset\ntest_split: test\n" \
           "doc_to_text: q\ndoc_to_target: ans\n"
    message = _refused(tmp_path, body, r"dataset_path 'some-org/some-dataset' \(a hub dataset:")
    assert "dataset_path: json" in message  # the fix names the local-file route


def test_includes_resolve_and_cycles_are_refused(tmp_path) -> None:
    (tmp_path / "_base.yaml").write_text(BASE.replace("task: t\n", "") + "doc_to_target: ans\n")
    child = _task(tmp_path, "include: _base.yaml\ntask: child\ndoc_to_text: 'Q {{q}}'\n",
                  "child.yaml")
    item = load_task(child).items[2]
    assert (item.task, item.prompt, item.target) == ("child", "Q q2", "2")
    (tmp_path / "a.yaml").write_text("include: b.yaml\ntask: a\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(TaskSpecError, match="includes itself"):
        load_task(tmp_path / "a.yaml")


def test_jinja_errors_name_the_column(tmp_path) -> None:
    _refused(tmp_path, BASE.replace("{{q}}", "{{qq}}") + "doc_to_target: ans\n",
             r"doc_to_text uses 'qq', which is not a column of item '0'.*Did you mean 'q'")


def test_fewshot_samplers_follow_lm_eval() -> None:
    """default: random.Random(1234).sample per document, n + 1 drawn and the document
    itself removed; first_n: the pool's first rows but the document."""
    from random import Random

    pool = [{"i": i} for i in range(10)]
    sampler = FewshotSampler(pool, "default")
    rnd = Random(1234)
    for doc in pool[:4]:
        expected = [x for x in rnd.sample(pool, 3) if x != doc][:2]
        assert sampler.sample(2, doc) == expected
    assert FewshotSampler(pool, "first_n").sample(2, pool[0]) == pool[1:3]


def test_jinja_in_merge3_prompts_is_rendered(tmp_path) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    common = ("format: generative\ndataset: {data_files: rows.jsonl}\ntarget_field: ans\n")
    (tmp_path / "j.yaml").write_text("task: j\n" + common
                                     + "prompt: 'Q: {{q}} {{ ans|int + 1 }}'\n")
    assert load_task(tmp_path / "j.yaml").items[1].prompt == "Q: q1 2"
    (tmp_path / "p.yaml").write_text("task: p\n" + common + "prompt: 'Q: {q} {{literal}}'\n"
                                     "prompt_format: python\n")
    assert load_task(tmp_path / "p.yaml").items[1].prompt == "Q: q1 {literal}"
    (tmp_path / "f.yaml").write_text("task: f\n" + common + "prompt: 'Q: {q}'\n")
    assert load_task(tmp_path / "f.yaml").items[1].prompt == "Q: q1"  # format strings still
    (tmp_path / "m.yaml").write_text("task: m\n" + common + "prompt: 'Q: {{ qx }}'\n")
    with pytest.raises(TaskSpecError, match=r"prompt uses 'qx'.*Did you mean 'q'"):
        load_task(tmp_path / "m.yaml")


def test_merge3_yaml_with_lm_eval_keys_says_which_reader(tmp_path) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "x.yaml").write_text("task: x\nformat: generative\ndataset: {data_files: "
                                     "rows.jsonl}\nprompt: '{q}'\ntarget_field: ans\n"
                                     "doc_to_text: q\n")
    with pytest.raises(TaskSpecError, match=r"drop 'format' to read it as an lm-eval"):
        load_task(tmp_path / "x.yaml")
