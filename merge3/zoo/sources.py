"""Raw text that ships with CPython: stdlib docstrings, ``raise`` messages, source comments
and the reference manual's prose (``pydoc_data.topics``).

Everything is read from the running interpreter's standard library with ``ast`` and
``tokenize`` (nothing is imported or executed), in sorted file order, so the same Python
version always yields the same records. Records are plain ``(text, label, source)``
triples; ``merge3.zoo.tasks`` turns them into tasks.
"""

from __future__ import annotations

import ast
import io
import re
import sysconfig
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "Record",
    "stdlib_dir",
    "module_files",
    "docstrings",
    "raise_messages",
    "comments",
    "manual_sentences",
    "first_paragraph",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One piece of text with a label and where it came from (``file:line`` or topic)."""

    text: str
    label: str
    source: str


def stdlib_dir() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


_SKIP_PARTS = {"test", "tests", "site-packages", "lib2to3", "__pycache__", "idle_test",
               "ensurepip", "turtledemo", "pydoc_data"}


@cache
def module_files(top: str) -> tuple[Path, ...]:
    """Source files of a top-level stdlib module or package (tests excluded), sorted."""
    root = stdlib_dir()
    single = root / f"{top}.py"
    if single.is_file():
        return (single,)
    package = root / top
    if not package.is_dir():
        return ()
    return tuple(
        sorted(p for p in package.rglob("*.py")
               if not _SKIP_PARTS.intersection(p.relative_to(root).parts[:-1]))
    )


@cache
def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def first_paragraph(docstring: str) -> str:
    """The first paragraph of a docstring, whitespace-normalised."""
    return _clean(docstring.strip().split("\n\n")[0])


def _relative(path: Path) -> str:
    return path.relative_to(stdlib_dir()).as_posix()


def docstrings(top: str) -> Iterator[tuple[str, str, str]]:
    """(first paragraph, kind, source) of every docstring in module ``top``.

    ``kind`` is ``module``, ``class``, ``method`` (a function defined in a class) or
    ``function``; private names (leading underscore, dunders aside) are skipped.
    """
    for path in module_files(top):
        tree = _parse(path)
        if tree is None:
            continue
        doc = ast.get_docstring(tree)
        if doc:
            yield first_paragraph(doc), "module", f"{_relative(path)}:1"
        yield from _walk_docstrings(tree, path, in_class=False)


def _walk_docstrings(node: ast.AST, path: Path, in_class: bool) -> Iterator[tuple[str, str, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = child.name
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            doc = ast.get_docstring(child)
            if doc and not private:
                if isinstance(child, ast.ClassDef):
                    kind = "class"
                else:
                    kind = "method" if in_class else "function"
                yield first_paragraph(doc), kind, f"{_relative(path)}:{child.lineno}"
            if not private:
                yield from _walk_docstrings(child, path, isinstance(child, ast.ClassDef))


def _message(node: ast.expr) -> str | None:
    """The literal text of a ``raise X(msg)`` argument (f-string fields kept as ``{expr}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + ast.unparse(value.value) + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _message(node.left)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
        node.func.attr == "format"
    ):
        return _message(node.func.value)
    return None


def raise_messages(top: str) -> Iterator[tuple[str, str, str]]:
    """(message, exception class name, source) for ``raise Name("message", ...)``."""
    for path in module_files(top):
        tree = _parse(path)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            if not isinstance(func, ast.Name) or not node.exc.args:
                continue
            message = _message(node.exc.args[0])
            if message:
                yield _clean(message), func.id, f"{_relative(path)}:{node.lineno}"


def comments(top: str) -> Iterator[tuple[str, str]]:
    """(comment text, source) of every ``#`` comment in module ``top`` (shebangs and
    pragma-like comments skipped; consecutive comment lines joined)."""
    for path in module_files(top):
        try:
            text = path.read_text(encoding="utf-8")
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (SyntaxError, UnicodeDecodeError, tokenize.TokenError, IndentationError):
            continue
        block: list[str] = []
        start, last = 0, -2
        for tok in tokens:
            if tok.type != tokenize.COMMENT:
                continue
            body = tok.string.lstrip("#").strip()
            line = tok.start[0]
            if line != last + 1 and block:
                yield _clean(" ".join(block)), f"{_relative(path)}:{start}"
                block = []
            if not block:
                start = line
            if body and not body.startswith(("!", "-*-", "type:", "noqa", "pragma", "fmt:")):
                block.append(body)
            last = line
        if block:
            yield _clean(" ".join(block)), f"{_relative(path)}:{start}"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def manual_sentences() -> Iterator[tuple[str, str]]:
    """(sentence, topic) for the prose of the reference manual in ``pydoc_data.topics``.

    Code examples, grammar productions and table rows are dropped: a paragraph counts
    as prose when none of its lines is indented code, a ``>>>`` prompt or a ``::=`` rule.
    """
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        for paragraph in topics[topic].split("\n\n"):
            lines = paragraph.strip("\n").splitlines()
            if not lines or any(
                ln.startswith("   ") or ">>>" in ln or "::=" in ln or ln.startswith(("+", "|", "="))
                for ln in lines
            ):
                continue
            for sentence in _SENTENCE_END.split(_clean(paragraph)):
                yield sentence, topic
