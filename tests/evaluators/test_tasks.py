"""Task YAML + dataset -> items; item selection; bad task files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.errors import ItemNotFoundError, TaskSpecError
from evaluators.tasks import load_task, load_tasks, read_item_ids, select_items


def _rows(tasks: dict[str, Path], name: str) -> list[dict]:
    text = (tasks["arith_gen"].parent / name).read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_generative_items_render_prompt_with_fewshot(tasks) -> None:
    rows = _rows(tasks, "arith.jsonl")
    task = load_task(tasks["arith_gen"])
    assert task.name == "arith_gen" and len(task.items) == len(rows)
    first, second = task.items[0], task.items[1]
    assert first.id == "add-000" and first.format == "generative"
    # One few-shot example: the first row of the split that is not the item itself.
    r0, r1 = rows[0], rows[1]
    shot = f"Q: {r1['a']}+{r1['b']}=? A: {r1['answer']}"
    assert first.prompt == f"{shot}\nQ: {r0['a']}+{r0['b']}=? A:"
    assert second.prompt.startswith(f"Q: {r0['a']}+{r0['b']}=? A: {r0['answer']}\n")
    assert first.target == r0["answer"]
    assert first.generation.stop == ("\n",) and first.generation.max_new_tokens == 6


def test_multiple_choice_items_carry_delimited_choices_and_gold(tasks) -> None:
    row = _rows(tasks, "arith.jsonl")[0]
    item = load_task(tasks["arith_mc"]).items[0]
    assert item.prompt == f"Q: {row['a']}+{row['b']}=? A:"
    assert item.choices == tuple(" " + c for c in row["choices"])
    assert item.target == row["gold"] and item.metric == "acc"


def test_classification_items_have_string_ids_and_heads(tasks) -> None:
    task = load_task(tasks["topic"], limit=5)
    assert [i.id for i in task.items] == ["0", "1", "2", "3", "4"]
    assert task.items[1].head == "topic" and task.items[1].target == 1


def test_ids_default_to_task_and_row_index(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"q": "x", "a": "1"}\n{"q": "y", "a": "2"}\n')
    (tmp_path / "t.yaml").write_text(
        "task: t\nformat: generative\ndataset: {data_files: d.jsonl}\n"
        "prompt: '{q}'\ntarget_field: a\n"
    )
    assert [i.id for i in load_task(tmp_path / "t.yaml").items] == ["t-00000", "t-00001"]


def test_saved_dataset_directory_loads(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list([{"id": "a", "text": "hi", "label": 0}]).save_to_disk(
        str(tmp_path / "items")
    )
    (tmp_path / "c.yaml").write_text(
        "task: c\nformat: classification\ndataset: {path: items}\n"
        "id_field: id\ninput_field: text\nlabel_field: label\n"
    )
    assert load_task(tmp_path / "c.yaml").items[0].prompt == "hi"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("task: g\nformat: generative\ndataset: {data_files: d.jsonl}\nprompt: '{q}'\n",
         "target_field"),
        ("format: generative\ndataset: {data_files: d.jsonl}\nprompt: '{q}'\ntarget_field: a\n",
         "missing field 'task'"),
        ("task: g\nformat: generative\ndataset: {data_files: d.jsonl}\nprompt: '{q}'\n"
         "target_field: a\nstop_sequences: [x]\n", "unknown key 'stop_sequences'"),
        ("task: g\nformat: multiple_choice\ndataset: {data_files: d.jsonl}\nprompt: '{q}'\n"
         "label_field: a\n", "choices_field"),
        ("task: g\nformat: ranking\ndataset: {data_files: d.jsonl}\n", "format"),
        ("task: g\nformat: generative\ndataset: {split: test}\nprompt: '{q}'\ntarget_field: a\n",
         "exactly one of"),
        ("task: g\nformat: generative\ndataset: {data_files: nope.jsonl}\nprompt: '{q}'\n"
         "target_field: a\n", "does not exist"),
        ("task: g\nformat: generative\ndataset: {data_files: d.jsonl}\nprompt: '{question}'\n"
         "target_field: a\n", "{question}"),
        ("task: g\nformat: generative\ndataset: {data_files: d.jsonl}\nprompt: '{q}'\n"
         "target_field: a\nmetric: acc\n", "metric 'acc'"),
    ],
)
def test_bad_task_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "d.jsonl").write_text('{"q": "x", "a": "1"}\n')
    (tmp_path / "bad.yaml").write_text(body)
    with pytest.raises(TaskSpecError) as err:
        load_task(tmp_path / "bad.yaml")
    assert message in str(err.value)
    assert "Fix:" in str(err.value) or "bad.yaml" in str(err.value)


def test_task_directory_and_limit(tasks) -> None:
    loaded = load_tasks([tasks["topic"].parent], limit=3)
    assert [t.name for t in loaded] == ["arith_gen", "arith_mc", "topic"]
    assert all(len(t.items) == 3 for t in loaded)


def test_select_items_keeps_anchor_order(tasks) -> None:
    loaded = load_tasks([tasks["arith_mc"], tasks["topic"]])
    chosen = select_items(loaded, {"arith_mc": ["add-007", "add-002"], "topic": ["5"]})
    assert [[i.id for i in t.items] for t in chosen] == [["add-007", "add-002"], ["5"]]
    flat = select_items(loaded, ["add-003", "topic/9", "arith_mc/add-001"])
    assert [[i.id for i in t.items] for t in flat] == [["add-003", "add-001"], ["9"]]


def test_item_not_in_bank_is_a_clear_error(tasks) -> None:
    loaded = load_tasks([tasks["arith_mc"]])
    with pytest.raises(ItemNotFoundError) as err:
        select_items(loaded, {"arith_mc": ["add-002", "add-999"]})
    assert "'add-999'" in str(err.value) and "arith_mc" in str(err.value)
    with pytest.raises(ItemNotFoundError, match="not among the tasks"):
        select_items(loaded, {"arithmc": ["add-002"]})


def test_read_item_ids_layouts(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('["x", 3]')
    (tmp_path / "b.json").write_text('{"items": ["x"]}')
    (tmp_path / "c.json").write_text('{"t": ["x", "y"]}')
    (tmp_path / "d.json").write_text('{"t": 3}')
    assert read_item_ids(tmp_path / "a.json") == ["x", "3"]
    assert read_item_ids(tmp_path / "b.json") == ["x"]
    assert read_item_ids(tmp_path / "c.json") == {"t": ["x", "y"]}
    # irt's anchors.json (merge3 irt anchors BANK --out anchors.json).
    (tmp_path / "e.json").write_text(json.dumps({
        "format": "merge3-irt-anchors-v1", "method": "random", "seed": 0, "k": 2,
        "items": [{"item": "arith_mc/add-004", "index": 4, "weight": 0.5},
                  {"item": "topic/7", "index": 47, "weight": 0.5}]}))
    assert read_item_ids(tmp_path / "e.json") == ["arith_mc/add-004", "topic/7"]
    with pytest.raises(TaskSpecError, match="unknown layout"):
        read_item_ids(tmp_path / "d.json")


def test_fewshot_from_another_split_inline_examples_and_description(tmp_path: Path) -> None:
    (tmp_path / "test.jsonl").write_text('{"q": "2+2", "a": "4"}\n')
    (tmp_path / "train.jsonl").write_text('{"q": "1+1", "a": "2"}\n{"q": "1+2", "a": "3"}\n')
    (tmp_path / "split.yaml").write_text(
        "task: s\nformat: generative\n"
        "dataset: {data_files: [test.jsonl], split: test}\n"
        "prompt: 'Q: {q} A:'\ntarget_field: a\nnum_fewshot: 2\nfewshot_split: train\n"
        "description: \"Add.\\n\"\nfewshot_delimiter: ' | '\n"
    )
    # A split other than the evaluated one needs its own files: data_files maps one split.
    with pytest.raises(TaskSpecError, match="no split 'train'"):
        load_task(tmp_path / "split.yaml")
    text = (tmp_path / "split.yaml").read_text()
    (tmp_path / "split.yaml").write_text(text.replace(
        "data_files: [test.jsonl]", "data_files: {test: test.jsonl, train: [train.jsonl]}"))
    item = load_task(tmp_path / "split.yaml").items[0]
    assert item.prompt == "Add.\nQ: 1+1 A: 2 | Q: 1+2 A: 3 | Q: 2+2 A:"
    (tmp_path / "inline.yaml").write_text(
        "task: s\nformat: multiple_choice\ndataset: {data_files: test.jsonl}\n"
        "prompt: 'Q: {q} A:'\nchoices: ['three', 'four']\nlabel_field: q\n"
    )
    with pytest.raises(TaskSpecError, match="'2\\+2' is not one of the choices"):
        load_task(tmp_path / "inline.yaml")
    (tmp_path / "inline.yaml").write_text(
        "task: s\nformat: multiple_choice\ndataset: {data_files: test.jsonl}\n"
        "prompt: 'Q: {q} A:'\nchoices: ['3', '4', '5']\nlabel_field: a\nnum_fewshot: 1\n"
        "fewshot_examples: [{q: '1+2', a: '3'}]\nfewshot_delimiter: ' | '\n"
        "description: 'Add. '\nmetric: acc_norm\n"
    )
    item = load_task(tmp_path / "inline.yaml").items[0]
    assert item.prompt == "Add. Q: 1+2 A: 3 | Q: 2+2 A:"
    assert (item.target, item.choices, item.metric) == (1, (" 3", " 4", " 5"), "acc_norm")
