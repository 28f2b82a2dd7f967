"""Errors of the zoo builder."""

from __future__ import annotations

from merge3.errors import Merge3Error

__all__ = ["ZooError", "ZooNotBuiltError"]


class ZooError(Merge3Error):
    """The zoo cannot be built or read."""


class ZooNotBuiltError(ZooError):
    """A zoo model or file was asked for before the zoo was built."""
