"""Scattering table: WK95 coefficients reproduce xraydb, ions, pymatgen table, neutron lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xraydb

from xrdsolve.refine.errors import StructureError
from xrdsolve.refine.physics.scattering import (
    anomalous_terms,
    form_factor_numpy,
    neutron_lengths,
    species_index,
    species_name,
)

S = np.linspace(0.0, 1.5, 31)  # sinθ/λ, Å⁻¹


@pytest.mark.parametrize("name", ["H", "C", "O2-", "Fe", "Fe3+", "Cu1+", "La3+", "Pb", "U"])
def test_wk95_matches_xraydb(name: str) -> None:
    np.testing.assert_allclose(form_factor_numpy(name, S), xraydb.f0(name, S), rtol=1e-10, atol=1e-10)


def test_ion_electron_count() -> None:
    assert form_factor_numpy("Fe3+", np.array([0.0]))[0] == pytest.approx(23.0, abs=0.02)
    assert form_factor_numpy("O2-", np.array([0.0]))[0] == pytest.approx(10.0, abs=0.05)


@pytest.mark.parametrize("name", ["C", "O", "Si", "Fe", "Cu", "Ag", "La", "Pb"])
def test_pymatgen_table_close_to_wk95(name: str) -> None:
    s = np.linspace(0.0, 0.65, 14)  # Cu Kα up to 2θ = 180°
    a = form_factor_numpy(name, s, "wk95")
    b = form_factor_numpy(name, s, "pymatgen")
    assert b[0] == pytest.approx(a[0], abs=0.05)  # both → Z at s = 0
    assert np.max(np.abs(a - b) / a) < 0.04


def test_species_lookup() -> None:
    assert species_name(species_index("Fe3+")) == "Fe3+"
    assert species_name(species_index("Fe")) == "Fe"
    assert species_name(species_index("Fe0+")) == "Fe"
    assert species_name(species_index("Fe7+")) == "Fe"  # missing ion falls back to the element
    assert species_name(species_index("Pu")) == "Pu"
    with pytest.raises(StructureError):
        species_index("Xx")


def test_neutron_and_anomalous() -> None:
    idx = torch.tensor([[species_index("Fe"), species_index("H"), species_index("Ni2+")]])
    b = neutron_lengths(idx, torch.float64)[0].numpy()
    np.testing.assert_allclose(b, [9.45, -3.7409, 10.3], atol=0.01)
    fp, fpp = anomalous_terms(idx, 1.540593, torch.float64)
    energy = 12398.419843320026 / 1.540593
    assert fp[0, 0].item() == pytest.approx(xraydb.f1_chantler("Fe", energy))
    assert fpp[0, 0].item() == pytest.approx(xraydb.f2_chantler("Fe", energy))
    assert fpp[0, 0].item() > 3.0  # Fe fluoresces under Cu Kα
