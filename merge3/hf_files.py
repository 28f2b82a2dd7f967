"""File names of a Hugging Face model directory, shared by the checkpoint reader and writer."""

from __future__ import annotations

import re

__all__ = ["SAFETENSORS_INDEX", "SAFETENSORS_SINGLE", "PICKLE_INDEX", "PICKLE_SINGLE",
           "is_weight_file"]

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"

# Files that hold weights; everything else in a model directory is copied to outputs.
_WEIGHT_FILE = re.compile(r"(\.safetensors|\.bin|\.pt|\.pth|\.ckpt|\.h5|\.msgpack)$|\.index\.json$")


def is_weight_file(name: str) -> bool:
    return _WEIGHT_FILE.search(name) is not None
