"""A search's run directory: one owner at a time, and a resume only of the same search.

:class:`RunDirLock` is held for the whole search (``run_dir/.lock``: pid, host, start
time). A second search or a ``--resume`` on a directory in use is refused with the
owner named; a lock left by a dead process (same host, pid gone or reused) is stale and
taken over. :func:`check_resume` compares the stored config with the given one: the
same search resumes; a change that keeps the study meaningful (more generations, a
longer flush timeout, another Ray address, more workers …) is allowed and returned to
be logged; any other change (method, genome bounds, anchors, estimator, objectives,
seeds …) is refused naming the keys, since one front would mix two searches.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from merge3.errors import RecipeError

__all__ = ["RunDirLock", "RunDirBusyError", "RunState", "check_resume", "config_changes",
           "RESUMABLE", "STATE_FILE"]

LOCK_FILE = ".lock"
STATE_FILE = "search_state.json"

# Keys (dotted) whose change keeps a resumed study meaningful: how long or where it runs,
# not what it searches or how candidates are scored.
RESUMABLE = (
    "strategy.generations",
    "workers.count", "workers.cpus", "workers.gpus", "workers.timeout", "workers.retries",
    "workers.address", "workers.fault",
    "tracking.flush_timeout",
    "evaluation.batch_size",
    "fitness.full_every",
)


class RunDirBusyError(RecipeError):
    """Another live search holds the run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid from the owner), if known."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class RunDirLock:
    """Exclusive ownership of a run directory for the lifetime of a search.

    Use as a context manager; the lock file is removed on any exit the process lives
    through (exceptions, Ctrl-C, SIGTERM via the CLI); after ``kill -9`` it is stale and
    the next search takes it over.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(),
                      "start": _process_start(os.getpid()), "since": time.time()}
        self.held = False

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treated as stale below

    def _stale(self, holder: Mapping[str, Any]) -> bool:
        if not holder or holder.get("host") != self.owner["host"]:
            # another host's lock cannot be checked from here: only an empty one is stale
            return not holder
        pid = holder.get("pid")
        if not isinstance(pid, int) or not _pid_alive(pid):
            return True
        start = holder.get("start")
        return start is not None and _process_start(pid) not in (None, start)

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile: try again
                if not self._stale(holder):
                    since = time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(holder.get("since", 0)))
                    raise RunDirBusyError(
                        f"{self.path.parent} is in use by another search: pid "
                        f"{holder.get('pid')} on {holder.get('host')}, since {since}.",
                        fix="wait for it to finish (or stop it), or choose another run "
                            "directory.") from None
                self.path.unlink(missing_ok=True)  # the owner is gone: take over
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self.owner, handle)
            self.held = True
            return self
        raise RunDirBusyError(f"Could not lock {self.path.parent}: the lock keeps changing.",
                              fix="make sure no other search uses this run directory.")

    def release(self) -> None:
        if self.held and (self._read() or {}).get("pid") == self.owner["pid"]:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping) and data:
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix, data


def config_changes(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two (validated, dumped) configs."""
    old, new = dict(_flatten(stored)), dict(_flatten(given))
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _resumable(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESUMABLE)


def check_resume(stored: Mapping[str, Any], given: Mapping[str, Any], run_dir: Path) -> list[str]:
    """The allowed changes of a resume (to log), or a refusal naming the others."""
    changes = config_changes(stored, given)
    refused = [k for k in changes if not _resumable(k)]
    if refused:
        shown = ", ".join(refused[:6]) + (f" (and {len(refused) - 6} more)"
                                           if len(refused) > 6 else "")
        raise RecipeError(
            f"--resume of {run_dir} with a different search: {shown} changed since it "
            "started, so one front would mix two searches.",
            fix="resume with the stored config (run_dir/config.yaml), or start the changed "
                f"search in a new run directory. Changes a resume accepts: "
                f"{', '.join(RESUMABLE)}.")
    if "strategy.generations" in changes and (
            given.get("strategy", {}).get("generations", 0)
            < stored.get("strategy", {}).get("generations", 0)):
        raise RecipeError(
            f"--resume of {run_dir} with fewer generations than it was started with.",
            fix="resume with at least the stored number of generations (a finished "
                "generation cannot be taken back), or start a new run directory.")
    return changes


class RunState:
    """The run directory's small JSON state, ``search_state.json``: the study name, the
    MLflow parent run id, the generations whose boundary work is done, and the resolved
    config the search started with (what ``--resume`` is compared with)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STATE_FILE
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    @property
    def started(self) -> bool:
        """Whether the directory holds a search."""
        return bool(self.data)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)

    def check_start(self, resume: bool) -> None:
        """Refuse a new search where one was started, and a resume where none was."""
        run_dir = self.path.parent
        if self.started and not resume:
            raise RecipeError(f"{run_dir} already holds a search.",
                              fix="pass --resume to continue it, or choose another run "
                                  "directory.")
        if resume and not self.started:
            raise RecipeError(f"{run_dir} holds no search to resume.",
                              fix="start it without --resume.")
