"""Write a Hugging Face checkpoint shard by shard, published only when complete.

Tensors stream into ``.<out>.partial-<pid>/`` beside the output, which is renamed into
place by :meth:`CheckpointWriter.finish`; on an error, Ctrl-C or SIGTERM it is removed,
so a crash never leaves half a model at ``out``. A writer killed with SIGKILL cannot clean
up: the next writer of the same output removes partial directories whose process is gone
(each holds an owner file naming host and pid), and puts back a previous output that a
kill caught between the two renames of the publish step.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from merge3.errors import CheckpointError
from merge3.hf_files import SAFETENSORS_INDEX, SAFETENSORS_SINGLE, is_weight_file

__all__ = ["CheckpointWriter", "remove_stale_partials"]

log = logging.getLogger("merge3.checkpoints")
OWNER_FILE = ".merge3-writer.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OverflowError:
        return False
    return True


def _stale(folder: Path) -> bool:
    """Whether a writer's temp folder belongs to a process that no longer runs here."""
    pid_text = folder.name.rsplit("-", 1)[-1]
    if not pid_text.isdigit():
        return False
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        owner = {}
    host = owner.get("host", socket.gethostname()) if isinstance(owner, dict) else None
    if host != socket.gethostname():
        return False  # another machine's writer on a shared file system: not ours to judge
    pid = int(pid_text)
    return pid != os.getpid() and not _pid_alive(pid)


def remove_stale_partials(out_dir: Path) -> list[Path]:
    """Remove ``.<name>.partial-<pid>`` folders of dead writers of ``out_dir``; restore
    ``.<name>.old-<pid>`` (the previous output, moved aside by a publish that was killed)
    when ``out_dir`` is missing, else remove it. Returns the folders dealt with."""
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    handled = []
    for kind in ("old", "partial"):
        for folder in sorted(parent.glob(f".{out_dir.name}.{kind}-*")):
            if not folder.is_dir() or not _stale(folder):
                continue
            if kind == "old" and not out_dir.exists():
                folder.rename(out_dir)
                log.warning("restored %s from %s (a killed write had moved it aside)",
                            out_dir, folder.name)
            else:
                shutil.rmtree(folder, ignore_errors=True)
                log.info("removed %s, left by a writer that no longer runs", folder)
            handled.append(folder)
    return handled


def _copy_side_files(src: Path, dst: Path) -> None:
    """Copy config, tokenizer and other non-weight files (and folders such as heads/)."""
    for entry in src.iterdir():
        if entry.name.startswith(".") or (entry.is_file() and is_weight_file(entry.name)):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dst / entry.name)
        else:
            shutil.copy2(entry, dst / entry.name)


class CheckpointWriter:
    """Write a checkpoint shard by shard into a temp directory, renamed on success.

    Use as a context manager: on an exception the temporary directory is removed and
    nothing appears at ``out_dir``.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        max_shard_bytes: int = 5 * 10**9,
        overwrite: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        remove_stale_partials(self.out_dir)
        if self.out_dir.exists() and any(self.out_dir.iterdir()) and not overwrite:
            raise CheckpointError(
                f"Output directory {self.out_dir} exists and is not empty.",
                fix="choose a new directory or pass --overwrite.",
            )
        self.overwrite = overwrite
        self.max_shard_bytes = max_shard_bytes
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = self.out_dir.parent / f".{self.out_dir.name}.partial-{os.getpid()}"
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir()
        owner = {"host": socket.gethostname(), "pid": os.getpid()}
        (self.tmp_dir / OWNER_FILE).write_text(json.dumps(owner))
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[str, list[str]]] = []  # (temp file name, tensor names)
        self._total_bytes = 0
        self._done = False

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        self._pending[name] = tensor.contiguous()
        self._pending_bytes += nbytes
        self._total_bytes += nbytes

    def _flush(self) -> None:
        if not self._pending:
            return
        file_name = f"shard-{len(self._shards):05d}.safetensors"
        save_file(self._pending, str(self.tmp_dir / file_name), metadata={"format": "pt"})
        self._shards.append((file_name, list(self._pending)))
        self._pending = {}
        self._pending_bytes = 0

    def finish(
        self,
        *,
        copy_from: Path | None = None,
        config_updates: dict[str, Any] | None = None,
        extra_files: dict[str, str] | None = None,
    ) -> Path:
        """Name the shards HF-style, write the index, copy config/tokenizer files, rename."""
        self._flush()
        count = len(self._shards)
        weight_map: dict[str, str] = {}
        for number, (tmp_name, names) in enumerate(self._shards, start=1):
            final = SAFETENSORS_SINGLE if count == 1 else (
                f"model-{number:05d}-of-{count:05d}.safetensors"
            )
            (self.tmp_dir / tmp_name).rename(self.tmp_dir / final)
            weight_map.update(dict.fromkeys(names, final))
        if count > 1:
            index = {"metadata": {"total_size": self._total_bytes}, "weight_map": weight_map}
            (self.tmp_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2))
        if copy_from is not None:
            _copy_side_files(copy_from, self.tmp_dir)
        if config_updates:
            config_path = self.tmp_dir / "config.json"
            config = json.loads(config_path.read_text()) if config_path.exists() else {}
            config.update(config_updates)
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
        for name, text in (extra_files or {}).items():
            (self.tmp_dir / name).write_text(text)
        (self.tmp_dir / OWNER_FILE).unlink(missing_ok=True)
        self._publish()
        self._done = True
        return self.out_dir

    def _publish(self) -> None:
        old = None
        if self.out_dir.exists():
            old = self.out_dir.parent / f".{self.out_dir.name}.old-{os.getpid()}"
            self.out_dir.rename(old)
        self.tmp_dir.rename(self.out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        self._pending = {}
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
