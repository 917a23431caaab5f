"""Symmetry-merged reflection lists (refine.physics.equivalents): same pattern, fewer reflections."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CRYSTAL_SYSTEMS, STRUCTURE_DATA
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xrdsolve.refine.errors import RefineError
from xrdsolve.refine.params import parameterize
from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, bragg_intensities, simulate
from xrdsolve.refine.physics.equivalents import merge_equivalent_reflections
from xrdsolve.refine.physics.forward import default_hkl
from xrdsolve.refine.radiation import Radiation

GRID = torch.arange(10.0, 120.0, 0.02, dtype=torch.float64)


def _symmetric(structures: list[Structure]) -> tuple[list[Structure], list[np.ndarray]]:
    """Each structure regenerated from its symmetry-constrained parameterisation (exactly symmetric, in the
    input cell and setting), with its space-group rotations."""
    params = [parameterize(s) for s in structures]
    return [p.to_structure() for p in params], [p.symops_rot for p in params]


def _profile(n: int) -> ProfileParams:
    return ProfileParams.default(n, U=2.0, V=-1.0, W=3.0, X=2.0, Y=1.0, asym=0.01)


def _varied() -> list[Structure]:
    """MP-20 CIFs as stored (often primitive cells of centred lattices, any setting), perovskites, carbons,
    and a few hand-made cells: every crystal system, centred and non-centrosymmetric groups."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, n, stride in (("mp20_subset/test.csv", 24, 7), ("perov_5/test.csv", 3, 37)):
            df = pd.read_csv(STRUCTURE_DATA / name)
            out += [Structure.from_str(c, fmt="cif") for c in df.cif.iloc[: n * stride : stride]]
    out.append(
        Structure(
            Lattice.hexagonal(3.25, 5.21),
            ["Zn", "Zn", "O", "O"],
            [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
        )
    )
    out.append(
        Structure.from_spacegroup(
            "R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"], [[0, 0, 0.3523], [0.3064, 0, 0.25]]
        )
    )
    out.append(
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    )
    out.append(Structure.from_spacegroup("F-43m", Lattice.cubic(5.43), ["Ga", "As"], [[0, 0, 0], [0.25] * 3]))
    return out


def test_merged_list_gives_the_same_pattern_for_every_crystal_system(shared_data) -> None:
    structures, rotations = _symmetric(_varied())
    systems = {SpacegroupAnalyzer(s, symprec=0.01).get_crystal_system() for s in structures}
    assert systems >= CRYSTAL_SYSTEMS
    crystals = CrystalBatch.from_structures(structures)
    profile = _profile(len(structures))
    for anomalous in (True, False):
        inst = Instrument(Radiation.preset("CuKa"), anomalous=anomalous)
        full = default_hkl(crystals, inst, float(GRID[-1]))
        merged = merge_equivalent_reflections(*full, rotations)
        y_full = simulate(crystals, GRID, inst, profile, full)
        y_merged = simulate(crystals, GRID, inst, profile, merged)
        assert isinstance(y_full, torch.Tensor) and isinstance(y_merged, torch.Tensor)
        err = (y_merged - y_full).abs().amax(dim=1) / y_full.abs().amax(dim=1)
        assert float(err.max()) < 1e-10, [
            str(s.composition) for s in np.array(structures)[err.numpy() > 1e-10]
        ]
        # every listed reflection is counted once; fewer reflections wherever the Laue group is larger than -1
        assert torch.equal(merged[1].sum(dim=1), full[1].sum(dim=1))
    n_full, n_merged = full[1].sum(dim=1), (merged[1] > 0).sum(dim=1)
    for s, a, b in zip(structures, n_full.tolist(), n_merged.tolist(), strict=True):
        laue = SpacegroupAnalyzer(s, symprec=0.01).get_point_group_symbol()
        if laue not in ("1", "-1"):
            assert b < a, (s.composition, laue)
    # NaCl (m-3m): up to 24 listed (half-sphere) reflections per orbit, fewer for special ones (h00, hhl)
    assert n_full[-2] / n_merged[-2] > 10


def test_merged_multiplicities_are_the_powder_multiplicities() -> None:
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (s,), rotations = _symmetric([nacl])
    crystals = CrystalBatch.from_structures([s])
    inst = Instrument(Radiation.monochromatic(1.5406))
    full = default_hkl(crystals, inst, 120.0)
    refl = bragg_intensities(crystals, inst, None, merge_equivalent_reflections(*full, rotations))
    present = refl.mask[0] > 0
    families = {
        tuple(sorted(np.abs(h))): float(m)
        for h, m in zip(refl.hkl[0][present].tolist(), refl.multiplicity[0][present], strict=True)
    }
    assert families[(1, 1, 1)] == 8 and families[(0, 0, 2)] == 6 and families[(0, 2, 2)] == 12
    assert families[(1, 1, 3)] == 24 and families[(2, 2, 4)] == 24 and families[(1, 3, 5)] == 48


def test_preferred_orientation_refuses_a_merged_list() -> None:
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (s,), rotations = _symmetric([nacl])
    crystals = CrystalBatch.from_structures([s])
    inst = Instrument(Radiation.monochromatic(1.5406))
    merged = merge_equivalent_reflections(*default_hkl(crystals, inst, 90.0), rotations)
    profile = _profile(1)
    profile.po_ratio = torch.full((1,), 1.2, dtype=torch.float64)
    with pytest.raises(RefineError, match="preferred orientation"):
        simulate(crystals, GRID, inst, profile, merged)
    profile.po_ratio = torch.ones(1, dtype=torch.float64)  # no texture: fine
    assert isinstance(simulate(crystals, GRID, inst, profile, merged), torch.Tensor)


@pytest.mark.parametrize("number", [1, 2, 14, 62, 136, 148, 167, 191, 225, 230])
def test_orbit_keys_are_the_largest_image_keys(number: int) -> None:
    """The orbit key of each h is the largest encoding ((g₀+s)·W + g₁+s)·W + g₂+s over every image g = ±h R,
    written out image by image here (triclinic to cubic, hexagonal axes included)."""
    from pymatgen.symmetry.groups import SpaceGroup

    from xrdsolve.refine.physics.equivalents import _orbit_keys, laue_rotations

    rotations = laue_rotations(
        np.array([op.rotation_matrix for op in SpaceGroup.from_int_number(number).symmetry_ops])
    )
    hkl = np.random.default_rng(number).integers(-12, 13, size=(500, 3)).astype(np.int64)
    span = int(np.abs(hkl).max()) * 3 + 1
    width = 2 * span + 1
    images = np.concatenate(
        [np.einsum("rj,kji->kri", hkl, rotations), -np.einsum("rj,kji->kri", hkl, rotations)]
    )
    expected = (
        ((images[..., 0] + span) * width + images[..., 1] + span) * width + images[..., 2] + span
    ).max(0)
    np.testing.assert_array_equal(_orbit_keys(hkl, rotations), expected)
