"""Errors of MASS routing: each names the expert, tensor or option at fault and the fix."""

from __future__ import annotations

from merge3.errors import Merge3Error

__all__ = ["RoutingError"]


class RoutingError(Merge3Error):
    """Experts cannot be routed (no experts, mismatched shapes, unknown layer or head...)."""
