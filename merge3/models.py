"""Model references, resolved in one place before anything is merged or evaluated.

A reference is a local Hugging Face directory, ``zoo:NAME`` (the built-in zoo, built
with ``merge3 zoo build``), or a hub id ``owner/name`` (downloaded where the machine has
a network; safetensors and configs only).
"""

from __future__ import annotations

from pathlib import Path

from merge3.errors import RecipeError

__all__ = ["resolve_model"]


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
