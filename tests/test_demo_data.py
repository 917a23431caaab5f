"""The bundled demo pattern is what the project's own recipe produces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from xrdsolve.conditioning import read_pattern

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "data" / "recipes" / "make_demo_pattern.py"
DEMO = REPO / "data" / "examples" / "demo_pattern.xye"


def _recipe():
    spec = importlib.util.spec_from_file_location("make_demo_pattern", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_demo_pattern_matches_its_recipe(tmp_path: Path) -> None:
    fresh = read_pattern(_recipe().make_demo_pattern(tmp_path / "demo.xye"))
    bundled = read_pattern(DEMO)
    np.testing.assert_array_equal(fresh.two_theta, bundled.two_theta)
    assert bundled.radiation is not None and bundled.radiation.name == "CuKa"
    # identical up to physics refinements since the file was made: same peaks, same counts scale
    assert np.corrcoef(fresh.intensity, bundled.intensity)[0, 1] > 0.995
    assert abs(fresh.intensity.max() / bundled.intensity.max() - 1) < 0.05


def test_demo_structure_keeps_b_iso() -> None:
    structure = _recipe().rutile_structure()
    assert structure.composition.reduced_formula == "TiO2" and len(structure) == 6
    assert sorted(set(structure.site_properties["b_iso"])) == [0.42, 0.59]
