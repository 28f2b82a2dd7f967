"""A small registry with lazy ``"module:attr"`` entries and "did you mean" on typos.

Follows the habit of lm-evaluation-harness' registries: entries may be registered
eagerly (an object) or lazily (an import string resolved on first use). Every named
choice in merge3 has one: merge methods, evaluator backends, IRT estimators, anchor
selectors and calibration engines, search samplers, alignment methods. A registry may
check what is registered (``check``: a type, or a predicate with a description), and
``get`` also accepts an unregistered ``"package.module:attr"`` — a plug-in named in a
config file — which passes the same check.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from merge3.errors import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry", "did_you_mean"]


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean X?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _import(reference: str, kind: str, error: type[UnknownNameError] = UnknownNameError
            ) -> Any:
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise error(f"Cannot import the {kind} {reference!r}: {err}.",
                               fix="check the module path (package.module:attribute) and "
                                   "that the package is installed.") from None
    if not hasattr(module, attr):
        raise error(f"Module {module_name!r} has no {attr!r} (the {kind} "
                               f"{reference!r}).{did_you_mean(attr, dir(module))}",
                               fix="check the attribute name after the colon.")
    return getattr(module, attr)


class Registry(Generic[T]):
    """Name -> object mapping for one kind of plug-in (merge methods, evaluators...).

    ``check`` is a type (entries must be instances, or subclasses when they are classes)
    or a callable returning True for a valid entry; ``expects`` describes it in errors.
    ``error`` is the error an unknown name raises (a subclass of UnknownNameError, so a
    package's callers can catch its own root error, e.g. ``IRTError``).
    """

    def __init__(self, kind: str, check: type | Callable[[Any], bool] | None = None, *,
                 expects: str | None = None, default: str | None = None,
                 error: type[UnknownNameError] = UnknownNameError) -> None:
        if not (isinstance(error, type) and issubclass(error, UnknownNameError)):
            raise TypeError(f"Registry {kind!r}: error={error!r} must be a subclass of "
                            "merge3.errors.UnknownNameError.")
        self.kind = kind
        self.check = check
        self.expects = expects or (getattr(check, "__name__", None) if check else None)
        self.default = default
        self.error = error
        self._entries: dict[str, T | str] = {}

    def _validate(self, name: str, obj: Any, *, plugin: bool = False) -> None:
        """Refuse an entry that fails ``check``: a TypeError when code registers it, the
        registry's error when a config names it as a ``module:attr`` plug-in."""
        if self.check is None:
            return
        if isinstance(self.check, type):
            ok = isinstance(obj, self.check) or (isinstance(obj, type)
                                                 and issubclass(obj, self.check))
        else:
            ok = bool(self.check(obj))
        if ok:
            return
        message = f"{self.kind} {name!r}: expected {self.expects}, got {obj!r}."
        if plugin:
            raise self.error(message, fix=f"point to {self.expects}.")
        raise TypeError(message)

    def register(self, name: str, obj: T | str | None = None) -> Any:
        """Register ``obj`` (or a lazy ``"module:attr"``) as ``name``; without ``obj``, a
        decorator: ``@REGISTRY.register("name")``."""
        if obj is None:
            def decorator(target: T) -> T:
                self.register(name, target)
                return target

            return decorator
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not isinstance(obj, str):
            self._validate(name, obj)
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (plug-ins registered for a while, e.g. in tests)."""
        self._entries.pop(name, None)

    def get(self, name: str | None = None) -> T:
        """The entry ``name`` (default: the registry's default), resolving lazy entries;
        an unregistered ``"module:attr"`` is imported as a plug-in."""
        name = name if name is not None else self.default
        if name is None:
            raise self.error(f"No {self.kind} given and none is the default.",
                             fix=f"name one of: {', '.join(sorted(self.names()))}.")
        if name not in self._entries:
            if ":" in name:
                obj = _import(name, self.kind, self.error)
                self._validate(name, obj, plugin=True)
                return obj
            raise self.error(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, self.names())}",
                fix=f"use one of: {', '.join(sorted(self.names()))}"
                    " (or a plug-in as package.module:attribute).",
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = _import(entry, self.kind, self.error)
            self._validate(name, entry)
            self._entries[name] = entry
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
