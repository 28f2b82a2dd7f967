"""The package layers of DESIGN.md hold: merge3 at the bottom, benchmarks never import tests,
and every name of a package front resolves."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# The console script's dispatcher sits above every package (it imports each lazily).
ENTRY_POINTS = {"merge3/cli.py"}


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """Imports of a forbidden package (``"irt"``) or of a package's internals
    (``"merge3.routing."``: its modules, while its front ``merge3.routing`` is allowed)."""
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if str(path.relative_to(ROOT)) in ENTRY_POINTS:
            continue
        for name in _imports(path):
            if name.split(".")[0] in forbidden or name.startswith(forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {name}")
    return out


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("merge3", ("search", "evaluators", "irt")),       # merge3 is the bottom layer
    ("evaluators", ("search", "merge3.routing.")),     # MASS's evaluator lives in evaluators/
    ("irt", ("search",)),
    ("benchmarks", ("tests",)),                        # builders live in */testing
])
def test_no_import_against_the_layers(folder, forbidden):
    assert _offenders(folder, forbidden) == []


@pytest.mark.parametrize("package", ["merge3", "irt", "evaluators", "search"])
def test_every_name_of_a_front_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_import_merge3_is_light():
    code = "import sys, merge3; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
