"""`merge3` command line (placeholder until the verbs land)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    return 0
