"""Task YAMLs in lm-eval's own format, their data, and a BOS-adding tiny Llama, for the
fidelity test against the real lm-evaluation-harness (test_lm_eval_fidelity.py)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

WORDS = ["a", "ox", "cat", "lamp", "river", "orange", "blanket", "elephant", "x", "umbrella"]


def add_bos_tokenizer(llama: Path, out: Path) -> Path:
    """A copy of the tiny Llama whose tokenizer prepends BOS (<|endoftext|>, id 256), as
    Llama tokenizers do: lm-eval then scores with it, merge3 must too."""
    shutil.copytree(llama, out)
    path = out / "tokenizer.json"
    spec = json.loads(path.read_text())
    bos = {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [256],
                                             "tokens": ["<|endoftext|>"]}},
    }
    path.write_text(json.dumps(spec))
    return out


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        choices = rng.sample(WORDS, 4)  # lengths 1..8: acc_norm's divisor matters
        gold = rng.randrange(4)
        rows.append({"a": rng.randint(0, 9), "b": rng.randint(0, 9), "topic": f"t{i % 3}",
                     "choices": choices, "gold": gold, "answer": choices[gold],
                     "sum": str(rng.randint(0, 18))})
    return rows


def greedy(model_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation by hand (tokenizer's own special tokens, full forward per
    step), decoded without special tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    ids = tokenizer(prompt)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True)


def _gen_prompt(row: dict) -> str:
    return f"Q: {row['a']}+{row['b']}=? A:"


MC_YAML = """\
task: fid_mc
dataset_path: json
dataset_kwargs:
  data_files:
    train: data/train.jsonl
    test: data/test.jsonl
output_type: multiple_choice
training_split: train
test_split: test
fewshot_split: train
num_fewshot: 2
description: "Pick a word ({{topic}}).\\n"
doc_to_text: "Q: {{a}} and {{b}}?\\nA:"
doc_to_choice: choices
doc_to_target: "{{gold}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
"""

MC2_YAML = """\
include: _mc_base.yaml
task: fid_mc2
fewshot_config:
  sampler: first_n
num_fewshot: 1
doc_to_choice: "{{ choices }}"
doc_to_target: answer
target_delimiter: ": "
metric_list:
  - metric: acc_norm
  - metric: acc
"""

MC_BASE_YAML = """\
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/test.jsonl
output_type: multiple_choice
test_split: test
fewshot_split: test
doc_to_text: "{{ a }} plus {{ b }}, {{ topic | upper }}"
"""

GEN_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/gen_{model}.jsonl
    train: data/train.jsonl
output_type: generate_until
test_split: test
fewshot_split: train
num_fewshot: {shots}
doc_to_text: "Q: {{{{a}}}}+{{{{b}}}}=? A:"
doc_to_target: "{target}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 5
  do_sample: false
metric_list:
  - metric: exact_match
    ignore_case: true
    regexes_to_ignore: [","]
filter_list:
  - name: first-word
    filter:
      - function: regex
        regex_pattern: "(\\\\S+)"
      - function: take_first
  - name: whole
    filter:
      - function: remove_whitespace
      - function: take_first
"""


def build_setting(root: Path, models: dict[str, Path], n: int = 40) -> Path:
    """The task folder: data/*.jsonl and five lm-eval YAMLs (fid_mc, fid_mc2 including
    _mc_base.yaml, and per model a zero-shot and a 1-shot generate_until task). The
    zero-shot targets are the model's own greedy first word (upper case) for even rows,
    so exact_match is 1 there and 0 on odd rows."""
    data = root / "data"
    data.mkdir(parents=True)
    test, train = _rows(n, 0), _rows(12, 1)
    for name, rows in (("test", test), ("train", train)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "mc.yaml").write_text(MC_YAML)
    (root / "_mc_base.yaml").write_text(MC_BASE_YAML)
    (root / "mc2.yaml").write_text(MC2_YAML)
    for name, model_dir in models.items():
        rows = []
        for i, row in enumerate(test[:16]):
            text = greedy(model_dir, _gen_prompt(row), 5).split("\n")[0].split(".")[0]
            first = text.split()[0] if text.split() else "[invalid]"
            rows.append({**row, "target": first.upper() if i % 2 == 0 else "no-such-word"})
        (data / f"gen_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / f"gen_{name}.yaml").write_text(GEN_YAML.format(
            task=f"fid_gen_{name}", model=name, shots=0, target="{{target}}"))
        (root / f"gen_fs_{name}.yaml").write_text(GEN_YAML.format(
            task=f"fid_gen_fs_{name}", model=name, shots=1, target="{{sum}}"))
    return root
