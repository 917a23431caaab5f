"""The notebooks in notebooks/ run top to bottom without error (nbclient), and are stored without outputs.

Every notebook is executed in the default suite (a notebook that errors fails CI): 17–30 s each on
2 idle cores, 100 s for the four (minutes each when the cores are shared with other heavy jobs).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
#: Per-cell limit (s): the heaviest cell is a Rietveld refinement of a real pattern.
CELL_TIMEOUT = 1200


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert {
        "01_solve_unknown_phase.ipynb",
        "02_refine_known_model.ipynb",
        "03_batch_composition_series.ipynb",
        "04_disorder.ipynb",
    } <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_parses(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"
        ast.parse(cell.source, filename=f"{path.name}:{cell.get('id', '?')}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("XRDSOLVE_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and traceback) when a cell fails
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    print(f"{path.name}: {seconds:.0f} s")
