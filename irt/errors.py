"""Errors of the ``irt`` package: each names the file, line or item at fault and the fix."""

from __future__ import annotations

from merge3.errors import Merge3Error, UnknownNameError

__all__ = ["IRTError", "ResponseFileError", "ItemBankError", "UnknownIRTNameError"]


class IRTError(Merge3Error):
    """Root of the IRT errors (calibration, anchors, estimation)."""


class ResponseFileError(IRTError):
    """A response file (long table, lm-eval samples, merge3 eval log) cannot be read."""

    def __init__(self, path: object, message: str, line: int | None = None,
                 fix: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}", fix=fix)


class ItemBankError(IRTError):
    """An item bank directory is missing, corrupt or of another format version."""


class UnknownIRTNameError(IRTError, UnknownNameError):
    """An estimator, anchor selector or calibration engine name that is not registered."""
