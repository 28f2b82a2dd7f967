"""The notebooks in notebooks/ run top to bottom on the built-in test zoo, and are committed
without outputs.

Each notebook runs in a fresh Jupyter kernel (nbclient) whose working directory is the
test's temporary directory (the notebooks write only under ``./runs``, which git ignores)
and which inherits this process's environment, so ``MERGE3_HOME`` points it at the
session's test zoo: the notebooks find the zoo the way a user's session does. A cell that
raises fails the test with the cell's traceback. The wall time of each notebook is
printed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = [
    "01_calibrate_item_bank.ipynb",
    "02_pareto_front.ipynb",
    "03_tsv_geometry.ipynb",
    "04_c2m3_alignment.ipynb",
]
NEEDS_MINILM_ZOO = {"01_calibrate_item_bank.ipynb", "02_pareto_front.ipynb",
                    "03_tsv_geometry.ipynb"}  # 04 trains its own digits networks
CELL_TIMEOUT = 900  # seconds; a notebook takes 0.5–3 min on a loaded 2-core machine


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    dirty = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None
                  or "execution" in cell.metadata)]
    assert not dirty, (f"{name}: cells {dirty} carry outputs; run "
                       "`.venv/bin/python scripts/strip_notebooks.py` before committing")
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "Time:" in first.source, (
        f"{name} must open with a markdown cell saying what it shows and how long it takes")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, merge3_home: Path, tmp_path: Path,
                       request: pytest.FixtureRequest, capsys: pytest.CaptureFixture) -> None:
    if name in NEEDS_MINILM_ZOO:
        request.getfixturevalue("zoo")  # built once per session under MERGE3_HOME
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    finally:
        seconds = time.perf_counter() - started
        nbformat.write(notebook, tmp_path / name)  # the executed copy, for a look
        with capsys.disabled():
            print(f"\n{name}: {seconds:.0f} s wall (executed copy: {tmp_path / name})")
    outputs = tmp_path / "runs" / Path(name).stem
    assert outputs.is_dir() and any(outputs.iterdir()), f"{name} wrote nothing to {outputs}"
    figures = sum("image/png" in output.get("data", {}) for cell in notebook.cells
                  if cell.cell_type == "code" for output in cell.outputs)
    assert figures > 0, (f"{name} showed no figure: did something switch matplotlib's "
                         "backend to Agg in the kernel?")


def test_library_figures_leave_a_notebooks_backend_alone(tmp_path: Path) -> None:
    # merge3 draws its PNGs on Figure objects; a matplotlib.use("Agg") inside the library
    # would silence every later inline plot of the notebook that called it
    code = f"""
import matplotlib
matplotlib.use("pdf")  # stands for the notebook's inline backend
from pathlib import Path
import numpy as np
from merge3.analysis.plots import plot_objective
from search.pareto import plot_front
out = Path({str(tmp_path)!r})
plot_front(np.array([[0.5, 0.6], [0.6, 0.5], [0.4, 0.4]]), ["a", "b"], out / "f.png")
plot_objective({{"c2m3": [1.0, 2.0]}}, out / "o.png")
print(matplotlib.get_backend())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().lower() == "pdf"
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "o.png").exists()
