"""refine.physics against pymatgen's XRDCalculator (same form-factor table, no broadening)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import CRYSTAL_SYSTEMS, STRUCTURE_DATA
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xrdsolve.refine.physics import Instrument, reflection_tables
from xrdsolve.refine.physics.reference import compare_sticks, pymatgen_sticks
from xrdsolve.refine.radiation import Radiation

LAM = 1.540593


def _load(name: str, n: int, stride: int = 1) -> list[Structure]:
    df = pd.read_csv(STRUCTURE_DATA / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(c, fmt="cif") for c in df.cif.iloc[: n * stride : stride]]


def _varied(n_mp20: int, n_perov: int, n_carbon: int) -> list[Structure]:
    return (
        _load("mp20_subset/test.csv", n_mp20)
        + _load("perov_5/test.csv", n_perov, stride=37)
        + _load("carbon_24/test.csv", n_carbon, stride=41)
    )


def _check(structures: list[Structure], table: str, pos_tol: float, int_tol: float) -> list:
    inst = Instrument(Radiation.monochromatic(LAM), form_factors=table)
    tables = reflection_tables(structures, inst, 90.0, 5.0)
    results = [compare_sticks(t, pymatgen_sticks(s, LAM)) for t, s in zip(tables, structures, strict=True)]
    for s, r in zip(structures, results, strict=True):
        assert r.unmatched == 0, (s.composition, r)
        assert r.max_position_error < pos_tol, (s.composition, r)
        assert r.max_intensity_error < int_tol, (s.composition, r)
    return results


def test_matches_pymatgen_fast_subset(shared_data) -> None:
    structures = _varied(12, 4, 4)
    _check(structures, "pymatgen", 1e-3, 1.0)


@pytest.mark.slow
def test_matches_pymatgen_220_structures(shared_data) -> None:
    structures = _varied(142, 40, 40)
    assert len(structures) >= 200
    systems = {SpacegroupAnalyzer(s, symprec=0.01).get_crystal_system() for s in structures}
    assert systems == CRYSTAL_SYSTEMS
    sizes = [len(s) for s in structures]
    assert min(sizes) == 1 or (min(sizes) <= 2 and max(sizes) >= 20)
    results = _check(structures, "pymatgen", 1e-3, 1.0)
    # far tighter in practice: identical formulas, differences are rounding only
    assert max(r.max_intensity_error for r in results) < 1e-6
    assert max(r.max_position_error for r in results) < 1e-4


def test_wk95_default_differs_only_by_form_factor_table(shared_data) -> None:
    """Default table (Waasmaier–Kirfel, xraydb) vs pymatgen's (Mott–Bethe from 4-Gaussian electron factors):

    identical positions; intensities within a few % of the strongest peak (the two parameterisations of f0
    differ by ≲ 2 % over the Cu Kα range), the median difference well below 1 %."""
    structures = _varied(20, 4, 4)
    results = _check(structures, "wk95", 1e-3, 5.0)
    assert np.median([r.max_intensity_error for r in results]) < 1.0


def test_neutron_matches_pymatgen_ndcalculator(shared_data) -> None:
    """Neutron mode (no polarisation, constant b) against pymatgen's NDCalculator with its b table."""
    from pymatgen.analysis.diffraction.neutron import NDCalculator

    structures = _varied(12, 4, 4)
    inst = Instrument(Radiation.parse("neutron:1.54"), form_factors="pymatgen")
    tables = reflection_tables(structures, inst, 90.0, 5.0)
    for t, s in zip(tables, structures, strict=True):
        p = NDCalculator(wavelength=1.54).get_pattern(s, two_theta_range=(5.0, 90.0))
        r = compare_sticks(t, (np.asarray(p.x), np.asarray(p.y)))
        assert r.unmatched == 0 and r.max_position_error < 1e-4 and r.max_intensity_error < 1e-6, (
            s.composition,
            r,
        )
