"""Fault injection for reliability tests and drills: make chosen candidates fail.

Declared in a search config under ``workers.fault``:

    workers:
      fault: {mode: raise, keys: [3, 7], attempts: [1]}

``mode``: ``raise`` (the candidate raises), ``exit`` (the worker process dies),
``hang`` (the worker sleeps ``seconds``, past the pool's timeout). ``keys``: the trial
numbers to fail (all when omitted); ``attempts``: which attempts fail (default: the
first only, so the retry on another worker succeeds; ``[1, 2]`` fails the retry too).

The driver itself can be killed at a chosen point, as ``kill -9`` would: set
``MERGE3_FAULT_KILL_AT=STAGE:N`` and the ``merge3 search`` process SIGKILLs itself the
N-th time (counted from its start) it reaches STAGE:

- ``ask``: a generation's candidates were asked from the study, none is evaluated yet;
- ``evaluate``: a candidate's result arrived, before it is told to the study (other
  candidates are still in flight on the workers);
- ``log``: the candidate's MLflow run was created, its metrics and status not yet logged;
- ``generation``: every candidate of a generation is finished, its front not yet logged.
- ``refit``: the front was fully evaluated (``fitness.full_every``), the item banks not
  yet recalibrated with it.

Unset (the default), :func:`kill_point` does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["FaultInjector", "InjectedFault", "kill_point", "KILL_ENV", "KILL_STAGES",
           "REFIT_STAGE"]

KILL_ENV = "MERGE3_FAULT_KILL_AT"
KILL_STAGES = ("ask", "evaluate", "log", "generation")  # those every search reaches
# reached only where fitness.full_every and recalibrate are on
REFIT_STAGE = "refit"


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


_reached: dict[str, int] = {}


def _kill_spec() -> tuple[str, int] | None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return None
    stage, _, count = spec.partition(":")
    if stage not in (*KILL_STAGES, REFIT_STAGE) or not count.isdigit() or int(count) < 1:
        raise ValueError(f"bad {KILL_ENV}={spec!r}: STAGE:N with STAGE one of "
                         f"{', '.join((*KILL_STAGES, REFIT_STAGE))} and N >= 1")
    return stage, int(count)


def kill_point(stage: str) -> None:
    """SIGKILL this process the N-th time it reaches ``stage`` if ``MERGE3_FAULT_KILL_AT``
    asks for it (see the module docstring); otherwise nothing."""
    spec = _kill_spec()
    if spec is None:
        return
    _reached[stage] = _reached.get(stage, 0) + 1
    if spec == (stage, _reached[stage]):
        os.kill(os.getpid(), signal.SIGKILL)
