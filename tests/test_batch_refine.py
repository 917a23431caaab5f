"""The refine task through the batch machinery gives what a direct refine call gives."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from batch_helpers import store_rows
from pymatgen.core import Structure

from xrdsolve.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"


@pytest.mark.slow
def test_refine_task_matches_direct_refine(tmp_path, capsys):
    from xrdsolve.conditioning.io import read_pattern
    from xrdsolve.refine.rietveld import refine

    shutil.copyfile(EXAMPLES / "demo_pattern.xye", tmp_path / "demo.xye")
    shutil.copyfile(EXAMPLES / "rutile_TiO2.cif", tmp_path / "rutile.cif")
    (tmp_path / "list.csv").write_text("path,model\ndemo.xye,rutile.cif\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "batch",
                str(tmp_path / "list.csv"),
                "-o",
                str(out),
                "--task",
                "refine",
                "-j",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "1 ok" in capsys.readouterr().out
    (row,) = store_rows(out)
    folder = out / row["output_dir"]
    assert {p.name for p in folder.iterdir()} >= {"summary.json", "fit.xye", "fit.png", "refined_1_TiO2.cif"}
    summary = json.loads((folder / "summary.json").read_text())

    # the worker runs torch with 1 thread, this process with several: sums differ in the last digits
    direct = refine(
        read_pattern(EXAMPLES / "demo_pattern.xye"), Structure.from_file(EXAMPLES / "rutile_TiO2.cif")
    )
    assert row["rwp"] == pytest.approx(direct.rwp, rel=1e-4)
    assert summary["rwp"] == pytest.approx(direct.rwp, rel=1e-4)
    lat = direct.phases[0].lattice
    for k in ("a", "b", "c", "alpha", "beta", "gamma"):
        assert row[k] == pytest.approx(lat[k].value, rel=1e-4)
    assert row["formula"] == "TiO2" and row["spacegroup"] == "P4_2/mnm"
    # the demo pattern was simulated from this rutile model: the fit must be good and the cell close
    ref = Structure.from_file(EXAMPLES / "rutile_TiO2.cif").lattice
    assert row["rwp"] < 0.2
    assert math.isclose(row["a"], ref.a, rel_tol=5e-3) and math.isclose(row["c"], ref.c, rel_tol=5e-3)
