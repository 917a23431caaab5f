"""Polar space groups: the origin along the polar axis is pinned (one coordinate held), so the normal matrix
is regular and the remaining coordinates are recovered relative to it."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.bench import perturb, simulate_pattern
from xrdsolve.refine.params import parameterize
from xrdsolve.refine.rietveld import (
    DEFAULT_STRATEGY,
    RefineOptions,
    polar_directions,
    polar_fixed_parameters,
    refine,
)

U_TRUE = 0.382


def _wurtzite(u: float = U_TRUE) -> Structure:
    s = Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.2495, 5.2069), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, u]]
    )
    s.add_site_property("b_iso", [0.6 if str(x.specie) == "Zn" else 0.8 for x in s])
    return s


def test_polar_directions_and_fixed_coordinate() -> None:
    ph = parameterize(_wurtzite())
    d = polar_directions(ph)
    assert d.shape == (3, 1) and abs(abs(d[2, 0]) - 1) < 1e-9
    assert [ph.names[i] for i in polar_fixed_parameters(ph)] == ["Zn.z"]  # the heavier site
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.3, 0.3, 0]]
    )
    assert polar_fixed_parameters(parameterize(rutile)) == []
    p1 = parameterize(
        Structure(
            Lattice.from_parameters(4, 5, 6, 80, 85, 95), ["Si", "O"], [[0.1, 0.2, 0.3], [0.4, 0.1, 0.7]]
        )
    )
    assert polar_directions(p1).shape == (3, 3)
    assert sorted(p1.names[i] for i in polar_fixed_parameters(p1)) == ["Si.x", "Si.y", "Si.z"]


@pytest.mark.slow
def test_wurtzite_from_perturbed_start_is_regular_and_recovers_u() -> None:
    truth = _wurtzite()
    pattern = simulate_pattern(truth, np.arange(20.0, 120.0, 0.02), seed=2)
    start = perturb(truth, np.random.default_rng(7))
    r = refine(pattern, start)
    assert r.status == "converged", r.status
    assert r.gof < 1.2
    ph = r.phases[0]
    zn = next(s for s in ph.sites if "Zn" in s.occupancy)
    o = next(s for s in ph.sites if "O" in s.occupancy)
    assert zn.xyz[2].esd == 0.0  # held: it defines the origin
    assert o.xyz[2].esd > 0
    du = (o.xyz[2].value - zn.xyz[2].value) % 1.0
    assert abs(du - U_TRUE) < 3 * o.xyz[2].esd, (du, o.xyz[2])
    for name, true in (("a", truth.lattice.a), ("c", truth.lattice.c)):
        v = ph.lattice[name]
        assert abs(v.value - true) < 3 * v.esd, (name, v, true)


def test_polar_origin_unfixed_is_flagged_singular() -> None:
    truth = _wurtzite()
    pattern = simulate_pattern(truth, np.arange(25.0, 80.0, 0.03), seed=1)
    strategy = (DEFAULT_STRATEGY[0], DEFAULT_STRATEGY[3])  # scale+background, then positions
    r = refine(
        pattern, truth, options=RefineOptions(strategy=strategy, fix_polar_origin=False, lattice_annealing=())
    )
    assert r.status == "singular"
