"""Read Hugging Face checkpoints tensor by tensor (writing: :mod:`merge3.checkpoint_writer`).

Reading is lazy: the safetensors headers are parsed (and checked against the file
sizes, so a truncated download is caught before any merge starts) and each tensor is
read from a memory map only when asked for. Writing streams tensors into shards of a
bounded size inside a temporary directory that is renamed into place only when the
checkpoint is complete, so a crash never leaves half a model behind.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from merge3.checkpoint_writer import CheckpointWriter
from merge3.errors import CheckpointError
from merge3.hf_files import PICKLE_INDEX, PICKLE_SINGLE, SAFETENSORS_INDEX, SAFETENSORS_SINGLE

__all__ = [
    "Checkpoint",
    "CheckpointWriter",
    "TensorInfo",
    "parse_size",
    "DTYPES",
]


# safetensors' dtype codes -> torch dtypes (the subset a model checkpoint uses).
_ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1}

# Names a user may write for an output dtype.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}



@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Where one tensor lives, read from a safetensors header."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    offset: int = 0  # byte offset of the data in ``file``

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


def parse_size(size: str | int) -> int:
    """Parse a shard size such as ``"5GB"``, ``"500MB"``, ``"2G"`` or ``1000000`` to bytes.

    Follows mergekit's ``--out-shard-size``: a bare ``B`` suffix means billions of bytes.
    """
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", size.upper())
    if not match:
        raise CheckpointError(
            f"Cannot read shard size {size!r}.", fix="write it like 5GB, 500MB or 1000000."
        )
    number, prefix, unit = match.groups()
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[prefix]
    if unit and unit.startswith("I"):
        scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[prefix]
    if not prefix and unit == "B":  # mergekit: "5B" = five billion bytes
        scale = 10**9
    value = int(float(number) * scale)
    if value <= 0:
        raise CheckpointError(f"Shard size {size!r} is not positive.", fix="give a size > 0.")
    return value


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check one safetensors file's header without reading its data."""
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            raw_len = handle.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(
                    f"{path} is truncated ({file_size} bytes, no safetensors header).",
                    fix="re-download or re-save this checkpoint file.",
                )
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > file_size - 8:
                raise CheckpointError(
                    f"{path} is truncated: its header claims {header_len} bytes but the file "
                    f"has {file_size}.",
                    fix="re-download or re-save this checkpoint file.",
                )
            header = json.loads(handle.read(header_len))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is not a valid safetensors file (corrupt header: {err}).",
            fix="re-download or re-save this checkpoint file.",
        ) from err
    except OSError as err:
        raise CheckpointError(f"Cannot read {path}: {err}.", fix="check the path.") from err

    infos: dict[str, TensorInfo] = {}
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        code = entry.get("dtype")
        if code not in _ST_DTYPES:
            raise CheckpointError(
                f"Tensor {name!r} in {path} has dtype {code!r}, which merge3 does not read.",
                fix="convert the checkpoint to float32/float16/bfloat16.",
            )
        shape = tuple(entry["shape"])
        start, end = entry["data_offsets"]
        numel = 1
        for d in shape:
            numel *= d
        if end - start != numel * _ST_ITEMSIZE[code]:
            raise CheckpointError(
                f"Tensor {name!r} in {path}: header size does not match its shape {shape}.",
                fix="re-save this checkpoint file.",
            )
        data_end = max(data_end, end)
        infos[name] = TensorInfo(name, _ST_DTYPES[code], shape, path, 8 + header_len + start)
    if 8 + header_len + data_end > file_size:
        missing = 8 + header_len + data_end - file_size
        raise CheckpointError(
            f"{path} is truncated: {missing} bytes of tensor data are missing.",
            fix="re-download or re-save this checkpoint file.",
        )
    return infos


class Checkpoint:
    """A Hugging Face model directory opened lazily, tensor by tensor.

    Accepts ``model.safetensors``, sharded safetensors with ``model.safetensors.index.json``
    and, only with ``allow_pickle=True``, ``pytorch_model.bin`` (sharded or not), which is
    loaded whole with ``torch.load(weights_only=True)``.
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_pickle: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(
                f"Model directory {self.path} does not exist.",
                fix="pass a local Hugging Face model directory (config.json + model.safetensors).",
            )
        self.config: dict[str, Any] = self._read_config()
        self._handles: dict[Path, Any] = {}
        self._pickled: dict[str, torch.Tensor] | None = None
        self._index = self._build_index(allow_pickle)

    # -- discovery -------------------------------------------------------------------------
    def _read_config(self) -> dict[str, Any]:
        config_path = self.path / "config.json"
        if not config_path.exists():
            return {}
        try:
            return json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(
                f"{config_path} is not valid JSON ({err}).", fix="repair or re-save config.json."
            ) from err

    def _build_index(self, allow_pickle: bool) -> dict[str, TensorInfo]:
        index_path = self.path / SAFETENSORS_INDEX
        if index_path.exists():
            try:
                weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as err:
                raise CheckpointError(
                    f"{index_path} is not a valid safetensors index ({err}).",
                    fix="re-save the checkpoint or remove the broken index.",
                ) from err
            infos: dict[str, TensorInfo] = {}
            for shard in sorted(set(weight_map.values())):
                shard_path = self.path / shard
                if not shard_path.exists():
                    raise CheckpointError(
                        f"Shard {shard_path} named in {index_path} is missing.",
                        fix="download the missing shard.",
                    )
                infos.update(read_safetensors_header(shard_path))
            absent = sorted(set(weight_map) - set(infos))
            if absent:
                raise CheckpointError(
                    f"{index_path} lists tensor {absent[0]!r} but no shard holds it.",
                    fix="re-save the checkpoint.",
                )
            return infos
        single = self.path / SAFETENSORS_SINGLE
        if single.exists():
            return read_safetensors_header(single)
        loose = sorted(self.path.glob("*.safetensors"))
        if loose:
            infos = {}
            for shard_path in loose:
                infos.update(read_safetensors_header(shard_path))
            return infos
        pickles = [self.path / PICKLE_SINGLE, self.path / PICKLE_INDEX]
        if any(p.exists() for p in pickles):
            if not allow_pickle:
                raise CheckpointError(
                    f"{self.path} holds only pickle weights (pytorch_model.bin); pickle files "
                    "can run arbitrary code when loaded.",
                    fix="convert it to safetensors, or pass --allow-pickle (allow_pickle=True) "
                    "if you trust its source.",
                )
            return self._load_pickles()
        raise CheckpointError(
            f"No weights found in {self.path}.",
            fix="the directory needs model.safetensors or model.safetensors.index.json.",
        )

    def _load_pickles(self) -> dict[str, TensorInfo]:
        index_path = self.path / PICKLE_INDEX
        files = (
            sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
            if index_path.exists()
            else [PICKLE_SINGLE]
        )
        self._pickled = {}
        infos = {}
        for name in files:
            state = torch.load(self.path / name, map_location="cpu", weights_only=True)
            for key, tensor in state.items():
                self._pickled[key] = tensor
                infos[key] = TensorInfo(key, tensor.dtype, tuple(tensor.shape), self.path / name)
        return infos

    # -- access -----------------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        """The model class (``architectures[0]``) or ``model_type`` from config.json."""
        archs = self.config.get("architectures") or []
        return archs[0] if archs else self.config.get("model_type")

    def names(self) -> list[str]:
        return list(self._index)

    def info(self, name: str) -> TensorInfo:
        try:
            return self._index[name]
        except KeyError:
            raise CheckpointError(
                f"Tensor {name!r} is missing from {self.path}.",
                fix="all models must have the same architecture and tensor names.",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor in its stored dtype."""
        info = self.info(name)
        if self._pickled is not None:
            return self._pickled[name]
        # A positioned read into a fresh buffer, not a memory map: mapped pages of every
        # input would stay resident for the whole merge and count against peak memory.
        handle = self._handles.get(info.file)
        if handle is None:
            handle = open(info.file, "rb")  # noqa: SIM115 (closed in close())
            self._handles[info.file] = handle
        buffer = bytearray(info.nbytes)
        if buffer:
            handle.seek(info.offset)
            if handle.readinto(buffer) != info.nbytes:
                raise CheckpointError(f"{info.file} ended while reading tensor {name!r}.",
                                      fix="re-download or re-save this checkpoint file.")
        tensor = torch.frombuffer(buffer, dtype=info.dtype) if buffer else torch.empty(
            0, dtype=info.dtype)
        return tensor.reshape(info.shape)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self._index:
            yield name, self.get(name)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor at once (for small models; merges stream instead)."""
        return dict(self.items())

    def num_layers(self) -> int | None:
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(self.config.get(key), int):
                return self.config[key]
        return None

    def close(self) -> None:
        handles = getattr(self, "_handles", {})  # __init__ may have failed before it
        for handle in handles.values():
            handle.close()
        handles.clear()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, tensors={len(self)})"
