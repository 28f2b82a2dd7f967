"""Model references, resolved in one place before anything is merged or evaluated.

A reference is a local Hugging Face directory, ``zoo:NAME`` (the built-in zoo, built
with ``merge3 zoo build``), or a hub id ``owner/name`` (downloaded where the machine has
a network; safetensors and configs only).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from merge3.errors import CheckpointError, RecipeError

__all__ = ["resolve_model", "check_output_path"]


def resolve_model(reference: str) -> Path:
    """A local model directory for ``reference``: a path, ``zoo:NAME``, or a hub id."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    if reference.startswith("zoo:"):
        from merge3 import zoo

        resolver = getattr(zoo, "resolve", None)
        if resolver is None:
            raise RecipeError(f"Cannot resolve {reference!r}: the zoo is not available.",
                              fix="build it with `merge3 zoo build`.")
        return Path(resolver(reference[4:]))
    if reference.count("/") == 1 and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(
                reference,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
            ))
        except Exception as err:  # offline, gated, missing: one clear message
            raise RecipeError(
                f"Model {reference!r} is neither a local directory nor downloadable ({err}).",
                fix="pass a local Hugging Face model directory.",
            ) from None
    raise RecipeError(f"Model directory {reference!r} does not exist.",
                      fix="check the path in the recipe (relative paths are read from the "
                      "recipe's folder).")


def check_output_path(out_dir: str | os.PathLike[str],
                      inputs: Iterable[str | os.PathLike[str]]) -> Path:
    """Refuse an output that is, lies inside, or contains an input (links resolved):
    writing there, with or without ``--overwrite``, would destroy or corrupt the input,
    or make the next merge copy the output as one of the input's side files."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"Output {out} exists and is not a directory.",
                              fix="choose a directory path for the output.")
    try:
        target = out.resolve()
    except (OSError, RuntimeError) as err:  # e.g. a symlink loop
        raise CheckpointError(f"Output {out} cannot be resolved ({err}).",
                              fix="choose another output path.") from None
    for reference in inputs:
        source = Path(reference).expanduser().resolve()
        if target == source:
            how = "is"
        elif source in target.parents:
            how = "lies inside"
        elif target in source.parents:
            how = "contains"
        else:
            continue
        raise CheckpointError(
            f"Output {out} {how} the input model {reference}; writing it would destroy or "
            "corrupt that input.",
            fix="choose an output directory outside every input model's directory.")
    return target
