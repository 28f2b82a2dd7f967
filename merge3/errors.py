"""One exception hierarchy for merge3: every error names the culprit and the fix."""

from __future__ import annotations

__all__ = [
    "Merge3Error",
    "CheckpointError",
    "RecipeError",
    "MergeError",
    "UnknownNameError",
    "MissingDependencyError",
]


class Merge3Error(Exception):
    """Root of merge3's errors. ``str(err)`` is one line: what went wrong, then the fix."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class CheckpointError(Merge3Error):
    """A checkpoint cannot be read or written (missing, truncated, pickle, NaN...)."""


class RecipeError(Merge3Error):
    """A recipe or config is invalid (unknown key, bad value, missing model...)."""


class MergeError(Merge3Error):
    """Models cannot be merged together (shape mismatch, different architectures...)."""


class UnknownNameError(Merge3Error, KeyError):
    """A name is not in a registry; the message suggests the closest ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class MissingDependencyError(Merge3Error, ImportError):
    """An optional dependency is not installed; the message gives the install command."""
