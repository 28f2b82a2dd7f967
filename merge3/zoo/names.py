"""Map zoo model names to the directories of a built zoo (``zoo:NAME`` in recipes)."""

from __future__ import annotations

from pathlib import Path

from merge3.registry import did_you_mean
from merge3.zoo.cache import default_zoo_dir, read_recipe
from merge3.zoo.errors import ZooNotBuiltError

__all__ = ["resolve", "zoo_models"]


def _split(name: str) -> tuple[str, str]:
    name = name.strip().removeprefix("zoo:")
    if "@" in name:
        name, size = name.rsplit("@", 1)
        return name, size
    return name, "demo"


def zoo_models(zoo_dir: str | Path) -> dict[str, Path]:
    """{zoo name: model directory} of a built zoo."""
    models = Path(zoo_dir) / "models"
    out = {}
    if (models / "base").is_dir():
        out["minilm/base"] = models / "base"
    for path in sorted(models.glob("expert-*")):
        out[f"minilm/expert/{path.name.removeprefix('expert-')}"] = path
    return out


def resolve(name: str) -> Path:
    """The model directory of ``minilm/base`` or ``minilm/expert/<task>`` (``@test`` for
    the test-size zoo); raises ZooNotBuiltError with the build command when absent."""
    short, size = _split(name)
    zoo_dir = default_zoo_dir(size)
    flag = "" if size == "demo" else f" --size {size}"
    if read_recipe(zoo_dir) is None:
        raise ZooNotBuiltError(
            f"Zoo model {name!r} is not available: the {size} zoo has not been built "
            f"({zoo_dir}).",
            fix=f"run `merge3 zoo build{flag}` (set MERGE3_HOME to use another cache).",
        )
    models = zoo_models(zoo_dir)
    if short not in models:
        raise ZooNotBuiltError(
            f"The {size} zoo in {zoo_dir} has no model {short!r}."
            f"{did_you_mean(short, list(models))}",
            fix=f"use one of: {', '.join(models)}.",
        )
    return models[short]
