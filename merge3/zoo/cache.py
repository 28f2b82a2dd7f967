"""Where zoos live and when they must be rebuilt.

A zoo is a directory ``$MERGE3_HOME/minilm/<size>`` (default ``~/.cache/merge3``). Its
``recipe.json`` is written last, after every other file: a directory with a
``recipe.json`` whose hash matches the current recipe is complete and up to date;
anything else is rebuilt from scratch into a temporary sibling and swapped in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["merge3_home", "default_zoo_dir", "recipe_hash", "is_current", "read_recipe",
           "write_recipe", "fresh_work_dir", "publish"]

RECIPE_FILE = "recipe.json"


def merge3_home() -> Path:
    """``$MERGE3_HOME`` or ``~/.cache/merge3``."""
    home = os.environ.get("MERGE3_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "merge3"


def default_zoo_dir(size: str) -> Path:
    """The default directory of the MiniLM zoo of ``size`` (``test`` or ``demo``)."""
    return merge3_home() / "minilm" / size


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """A short hash of a JSON-serialisable recipe (key order does not matter)."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_recipe(zoo_dir: str | Path) -> dict[str, Any] | None:
    """The stored recipe of a complete zoo, or None."""
    path = Path(zoo_dir) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_current(zoo_dir: str | Path, recipe: Mapping[str, Any]) -> bool:
    """True when ``zoo_dir`` holds a complete zoo built from ``recipe``."""
    stored = read_recipe(zoo_dir)
    return stored is not None and stored.get("hash") == recipe_hash(recipe)


def write_recipe(zoo_dir: str | Path, recipe: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``recipe.json`` (the completion marker) atomically."""
    path = Path(zoo_dir) / RECIPE_FILE
    body = {"hash": recipe_hash(recipe), "recipe": dict(recipe), **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def fresh_work_dir(zoo_dir: str | Path) -> Path:
    """An empty temporary sibling of ``zoo_dir`` to build into."""
    zoo_dir = Path(zoo_dir)
    work = zoo_dir.with_name(f".{zoo_dir.name}.building-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def publish(work: Path, zoo_dir: str | Path) -> Path:
    """Replace ``zoo_dir`` by the finished ``work`` directory."""
    zoo_dir = Path(zoo_dir)
    if zoo_dir.exists():
        old = zoo_dir.with_name(f".{zoo_dir.name}.old-{os.getpid()}")
        os.replace(zoo_dir, old)
        os.replace(work, zoo_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, zoo_dir)
    return zoo_dir
