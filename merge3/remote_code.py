"""Python code shipped inside a model directory runs only when the user asks for it.

A checkpoint's ``config.json`` or ``tokenizer_config.json`` may name classes in its own
``.py`` files (``auto_map``); transformers imports and runs those files when
``trust_remote_code=True`` and, left unset, may even ask on stdin. merge3 passes the
flag explicitly on every load — False unless asked (``merge3 eval --trust-remote-code``,
``evaluation.trust_remote_code: true`` in a search config) — and refuses a directory
whose model or tokenizer cannot load without that code before transformers sees it.
Where transformers has the architecture itself, the shipped code is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from merge3.errors import CheckpointError

__all__ = ["check_remote_code", "remote_code_requests"]


def _native_model_type(model_type: object) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING_NAMES


def _native_tokenizer(tokenizer_class: object, model_type: object) -> bool:
    import transformers

    if isinstance(tokenizer_class, str) and tokenizer_class:
        base = tokenizer_class.removesuffix("Fast")
        return any(hasattr(transformers, name) for name in (tokenizer_class, base, base + "Fast"))
    return _native_model_type(model_type)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or unreadable: the loaders' own checks report it
    return data if isinstance(data, dict) else {}


def remote_code_requests(model_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """{file name: the classes it asks for} for the files of ``model_dir`` that cannot
    load without the directory's own code (``auto_map`` and no native class)."""
    model_dir = Path(model_dir)
    config = _read(model_dir / "config.json")
    tokenizer = _read(model_dir / "tokenizer_config.json")
    out: dict[str, list[str]] = {}
    model_type = config.get("model_type")
    if config.get("auto_map") and not _native_model_type(model_type):
        out["config.json"] = sorted(_classes(config["auto_map"]))
    if tokenizer.get("auto_map") and not _native_tokenizer(tokenizer.get("tokenizer_class"),
                                                           model_type):
        out["tokenizer_config.json"] = sorted(_classes(tokenizer["auto_map"]))
    return out


def _classes(auto_map: object) -> set[str]:
    if not isinstance(auto_map, dict):
        return {str(auto_map)}
    found = set()
    for value in auto_map.values():
        for entry in value if isinstance(value, list) else [value]:
            if entry:
                found.add(str(entry))
    return found


def check_remote_code(model_dir: str | os.PathLike[str], trust_remote_code: bool) -> None:
    """Refuse ``model_dir`` when it needs its own Python code and that was not asked for."""
    if trust_remote_code:
        return
    requests = remote_code_requests(model_dir)
    if requests:
        name, classes = next(iter(requests.items()))
        raise CheckpointError(
            f"{Path(model_dir) / name} asks to run Python code shipped with the model "
            f"(auto_map: {', '.join(classes)}); merge3 does not run a model's own code "
            "unless asked.",
            fix="read that code; if you trust it, pass --trust-remote-code to `merge3 eval` "
            "(`evaluation: {trust_remote_code: true}` in a search config).",
        )
