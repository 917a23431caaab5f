"""Example data the notebooks use: the anatase CIF is what its recipe writes and is anatase."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pymatgen.core import Structure

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "data" / "recipes" / "make_anatase_cif.py"
ANATASE = REPO / "data" / "examples" / "anatase_TiO2.cif"


def test_anatase_cif_matches_recipe_and_reference_d_spacings(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_anatase_cif", RECIPE)
    assert spec is not None and spec.loader is not None
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    assert recipe.write(tmp_path / "a.cif").read_text() == ANATASE.read_text()
    s = Structure.from_file(ANATASE)
    assert s.get_space_group_info() == ("I4_1/amd", 141) and s.composition.reduced_formula == "TiO2"
    assert len(s) == 12
    # strongest lines of anatase, ICDD PDF 21-1272: d(101) 3.52 Å, d(004) 2.378 Å, d(200) 1.892 Å
    for hkl, d_ref in (((1, 0, 1), 3.52), ((0, 0, 4), 2.378), ((2, 0, 0), 1.892)):
        assert s.lattice.d_hkl(hkl) == pytest.approx(d_ref, abs=0.005)
