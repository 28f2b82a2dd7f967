from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from merge3.checkpoints import Checkpoint, CheckpointWriter, parse_size
from merge3.errors import CheckpointError


def test_reads_sharded_bf16_lazily_and_matches_transformers(gpt2_family):
    base = gpt2_family["base"]
    assert (base / "model.safetensors.index.json").exists(), "fixture should be sharded"
    ckpt = Checkpoint(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    reference = model.state_dict()
    for name in ckpt.names():
        assert ckpt.info(name).dtype == torch.bfloat16
        assert torch.equal(ckpt.get(name), reference[name])
    assert ckpt.architecture == "GPT2LMHeadModel"
    assert ckpt.num_layers() == 3


def test_writer_shards_with_index_and_loads_back(llama_family, tmp_path):
    src = Checkpoint(llama_family["base"])
    out = tmp_path / "copy"
    with CheckpointWriter(out, max_shard_bytes=20_000) as writer:
        for name, tensor in src.items():
            writer.add(name, tensor.to(torch.float16))
        writer.finish(copy_from=src.path, config_updates={"dtype": "float16"})
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 1 and shards[0].endswith(f"-of-{len(shards):05d}.safetensors")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(src.names())
    assert (out / "tokenizer.json").exists() and (out / "config.json").exists()
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    copy = Checkpoint(out)
    for name in src.names():
        assert torch.equal(copy.get(name), src.get(name).to(torch.float16))
    AutoModelForCausalLM.from_pretrained(out)  # an ordinary HF checkpoint


def test_writer_leaves_nothing_on_failure(llama_family, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(RuntimeError), CheckpointWriter(out) as writer:
        writer.add("x", torch.zeros(3))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_nonempty_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty.*--overwrite"):
        CheckpointWriter(tmp_path / "out")


def test_truncated_file_is_named(llama_family, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(llama_family["base"], broken)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"model.safetensors is truncated.*re-download"):
        Checkpoint(broken)
    weights.write_bytes(data[:4])
    with pytest.raises(CheckpointError, match="truncated"):
        Checkpoint(broken)


def test_corrupt_header(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes((10).to_bytes(8, "little") + b"not json!!")
    with pytest.raises(CheckpointError, match="corrupt header"):
        Checkpoint(tmp_path)


def test_pickle_refused_unless_opted_in(tmp_path):
    torch.save({"w": torch.ones(2, 2)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="pickle.*--allow-pickle"):
        Checkpoint(tmp_path)
    ckpt = Checkpoint(tmp_path, allow_pickle=True)
    assert torch.equal(ckpt.get("w"), torch.ones(2, 2))


def test_missing_directory_and_weights(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="No weights found"):
        Checkpoint(tmp_path)


def test_loose_safetensors_files(tmp_path: Path):
    save_file({"a": torch.arange(4.0)}, str(tmp_path / "part1.safetensors"))
    save_file({"b": torch.ones(2)}, str(tmp_path / "part2.safetensors"))
    assert sorted(Checkpoint(tmp_path).names()) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("1.5G", 1_500_000_000), ("5B", 5 * 10**9),
     ("2MiB", 2 * 2**20), (1234, 1234), ("1000", 1000)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage():
    with pytest.raises(CheckpointError, match="shard size"):
        parse_size("lots")


_KILLED_WRITER = """
import os, signal, sys, torch
from merge3.checkpoint_writer import CheckpointWriter
out, stage = sys.argv[1], sys.argv[2]
writer = CheckpointWriter(out, max_shard_bytes=1000, overwrite=True)
for i in range(4):
    writer.add(f"t{i}", torch.full((200,), float(i)))
if stage == "publish":  # killed between moving the old output aside and the rename
    writer._publish = lambda: (writer.out_dir.rename(
        writer.out_dir.parent / f".{writer.out_dir.name}.old-{os.getpid()}"),
        os.kill(os.getpid(), signal.SIGKILL))
    writer.finish()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_a_writer(out: Path, stage: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out), stage])
    assert proc.returncode == -9


def test_partials_of_a_killed_writer_are_removed_by_the_next(tmp_path):
    out = tmp_path / "merged"
    _kill_a_writer(out, "add")
    left = list(tmp_path.glob(".merged.partial-*"))
    assert len(left) == 1 and (left[0] / "shard-00000.safetensors").exists()
    # a live writer's partial (this test's own parent process) must be left alone
    live = tmp_path / f".merged.partial-{os.getppid()}"
    live.mkdir()
    with CheckpointWriter(out) as writer:
        writer.add("x", torch.ones(2))
        writer.finish()
    assert not left[0].exists() and live.exists()
    assert Checkpoint(out).names() == ["x"]


def test_a_publish_killed_midway_restores_the_previous_output(tmp_path):
    out = tmp_path / "merged"
    with CheckpointWriter(out) as writer:
        writer.add("previous", torch.ones(2))
        writer.finish()
    _kill_a_writer(out, "publish")
    assert not out.exists() and list(tmp_path.glob(".merged.old-*"))
    with pytest.raises(CheckpointError, match="not empty"):
        CheckpointWriter(out)  # the restored previous output is protected again
    assert Checkpoint(out).names() == ["previous"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
