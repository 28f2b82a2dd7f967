"""Text fit to share: no credentials and no machine paths.

Tracking and storage URIs may carry passwords, and a search config is full of the
driver's absolute paths; what merge3 writes to MLflow, to logs and to the terminal goes
through :func:`redact_credentials`, and artifacts also through :func:`portable_text`.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["redact_credentials", "portable_text"]

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][\w+.-]*://)(?P<userinfo>[^/\s@'\"]+)@")
_ABSOLUTE = re.compile(r"(?<![\w:/.…])(/[^\s'\",:]+)")
_SQLITE = re.compile(r"(sqlite:///)(/[^\s'\",]+)")


def redact_credentials(text: str) -> str:
    """``text`` with the credentials of every URL replaced by ``***`` (``user:***@`` for
    ``user:password@``, ``***@`` for a bare token)."""
    def redact(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user + ':' if colon else ''}***@"

    return _USERINFO.sub(redact, text)


def _shorten(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd``, or ``…/<name>`` outside it."""
    try:
        return str(path.resolve().relative_to(cwd))
    except ValueError:
        return f"…/{path.name}"


def portable_text(text: str) -> str:
    """``text`` with absolute paths made relative to the working directory (``…/<name>``
    outside it) and URL passwords replaced by ``***``."""
    text = redact_credentials(text)
    cwd = Path.cwd().resolve()
    text = _SQLITE.sub(lambda m: m.group(1) + _shorten(Path(m.group(2)), cwd), text)
    return _ABSOLUTE.sub(lambda m: _shorten(Path(m.group(1)), cwd), text)
