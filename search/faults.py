"""Fault injection for reliability tests and drills: make chosen candidates fail.

Declared in a search config under ``workers.fault``:

    workers:
      fault: {mode: raise, keys: [3, 7], attempts: [1]}

``mode``: ``raise`` (the candidate raises), ``exit`` (the worker process dies),
``hang`` (the worker sleeps ``seconds``, past the pool's timeout). ``keys``: the trial
numbers to fail (all when omitted); ``attempts``: which attempts fail (default: the
first only, so the retry on another worker succeeds; ``[1, 2]`` fails the retry too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["FaultInjector", "InjectedFault"]


class InjectedFault(RuntimeError):
    """The failure a ``raise`` fault produces."""


class FaultInjector:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        unknown = set(spec) - {"mode", "keys", "attempts", "seconds"}
        if unknown or spec.get("mode") not in ("raise", "exit", "hang"):
            raise ValueError(f"bad fault spec {dict(spec)}: mode raise|exit|hang, keys, "
                             "attempts, seconds")
        self.mode = spec["mode"]
        self.keys = set(spec["keys"]) if spec.get("keys") is not None else None
        self.attempts = set(spec.get("attempts", [1]))
        self.seconds = float(spec.get("seconds", 3600))

    def maybe_fail(self, key: Any, attempt: int) -> None:
        if (self.keys is not None and key not in self.keys) or attempt not in self.attempts:
            return
        if self.mode == "raise":
            raise InjectedFault(f"injected fault on candidate {key} (attempt {attempt})")
        if self.mode == "exit":
            os._exit(17)
        time.sleep(self.seconds)
