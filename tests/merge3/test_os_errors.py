"""OS-level failures reach the user as one line naming the path and the fix."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from merge3 import cli


def _recipe(family, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "merge_method": "task_arithmetic", "base_model": str(family["base"]),
        "models": [{"model": str(family["expert_1"])}]}))
    return path


@pytest.mark.parametrize(("code", "fix"), [(errno.ENOSPC, "free some space"),
                                           (errno.EROFS, "writable location"),
                                           (errno.ENOTDIR, "is a file, not a directory")])
def test_a_failing_write_is_one_line_with_the_path(llama_family, tmp_path, monkeypatch, capsys,
                                                   code, fix):
    import merge3.merging

    def full_disk(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "out" / "model.safetensors"))

    monkeypatch.setattr(merge3.merging, "CheckpointWriter", full_disk)
    recipe = _recipe(llama_family, tmp_path)
    assert cli.main(["merge", str(recipe), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert os.strerror(code) in err and "out/model.safetensors" in err and fix in err
    assert "internal error" not in err


def test_a_closed_pipe_ends_quietly():
    reader = subprocess.run(f"{sys.executable} -m merge3.cli methods | head -1", shell=True,
                            capture_output=True, text=True, timeout=120)
    assert reader.stdout.startswith("linear")
    assert reader.stderr == ""


def test_sigterm_cleans_up_like_ctrl_c(llama_family, tmp_path, monkeypatch, capsys):
    import merge3.merging

    out = tmp_path / "out"
    original = merge3.merging.merge_model

    def slow(*args, **kwargs):  # the first tensor is written, then the process is told to stop
        for i, item in enumerate(original(*args, **kwargs)):
            yield item
            if i == 0:
                threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
                time.sleep(5)

    monkeypatch.setattr(merge3.merging, "merge_model", slow)
    assert cli.main(["merge", str(_recipe(llama_family, tmp_path)), str(out), "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r.yaml"]  # no partial directory left
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
