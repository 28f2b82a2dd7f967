"""Strip outputs, execution counts and run metadata from notebooks before committing.

    .venv/bin/python scripts/strip_notebooks.py                 # every notebooks/*.ipynb
    .venv/bin/python scripts/strip_notebooks.py path/to/x.ipynb

Files already clean are left untouched. tests/notebooks checks that committed
notebooks are stripped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts, run timings or widget state."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    notebook.metadata.pop("widgets", None)
    return notebook


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in files:
        before = path.read_text(encoding="utf-8")
        notebook = strip(nbformat.reads(before, as_version=4))
        after = nbformat.writes(notebook) + "\n"
        if after != before:
            path.write_text(after, encoding="utf-8")
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
