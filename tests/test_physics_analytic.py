"""Analytic cases: single-atom cubic cell, systematic absences, Friedel's law, invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.physics import (
    CrystalBatch,
    Instrument,
    ProfileParams,
    bragg_intensities,
    generate_hkl,
    reflection_table,
    simulate,
)
from xrdsolve.refine.physics.scattering import form_factor_numpy
from xrdsolve.refine.physics.structure_factor import friedel_mean_f_squared_flat, structure_factor
from xrdsolve.refine.radiation import Radiation

LAM = 1.540593
CUKA1 = Instrument(Radiation.monochromatic(LAM))
GRID = torch.arange(10.0, 80.0, 0.02, dtype=torch.float64)


def _fsq(structure: Structure, hkl: list[tuple[int, int, int]], anomalous: float | None = None) -> np.ndarray:
    batch = CrystalBatch.from_structures([structure])
    h = torch.tensor([hkl])
    d = 1.0 / np.linalg.norm(
        np.asarray(hkl, dtype=float) @ structure.lattice.reciprocal_lattice_crystallographic.matrix, axis=1
    )
    s2 = torch.as_tensor(0.25 / d**2)[None]
    re, im = structure_factor(batch, h, s2, wavelength=anomalous)
    return (re**2 + im**2)[0].numpy()


def test_single_atom_cubic() -> None:
    a = 3.0
    s = Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]])
    rows = reflection_table(s, CUKA1, 80.0)
    expected_mult = {(1, 0, 0): 6, (1, 1, 0): 12, (1, 1, 1): 8, (2, 0, 0): 6, (2, 1, 0): 24}
    for r in rows[:5]:
        hkl = tuple(sorted((abs(r["h"]), abs(r["k"]), abs(r["l"])), reverse=True))
        assert r["multiplicity"] == expected_mult[hkl]
        d = a / math.sqrt(sum(v * v for v in hkl))
        assert r["d"] == pytest.approx(d, rel=1e-12)
        tt = 2 * math.degrees(math.asin(LAM / (2 * d)))
        assert r["two_theta"] == pytest.approx(tt, abs=1e-9)
        f = form_factor_numpy("Cu", np.array([1 / (2 * d)]))[0]
        assert r["f_squared"] == pytest.approx(f * f, rel=1e-10)
        th = math.radians(tt / 2)
        lp = 0.5 * (1 + math.cos(2 * th) ** 2) / (math.sin(th) ** 2 * math.cos(th))
        assert r["intensity"] == pytest.approx(r["multiplicity"] * f * f * lp, rel=1e-10)


def test_centring_absences() -> None:
    fcc = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    bcc = Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    hkl = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 0, 0), (2, 1, 0), (2, 1, 1), (2, 2, 0), (3, 1, 0)]
    f_fcc = _fsq(fcc, hkl)
    f_bcc = _fsq(bcc, hkl)
    for (h, k, ll), a, b in zip(hkl, f_fcc, f_bcc, strict=True):
        mixed = len({h % 2, k % 2, ll % 2}) > 1
        assert (a < 1e-9) == mixed
        assert (b < 1e-9) == ((h + k + ll) % 2 == 1)


def test_glide_and_screw_absences() -> None:
    # P2_1/c (b unique): h0l with l odd (c glide) and 0k0 with k odd (2_1 screw) are absent
    s = Structure.from_spacegroup(
        "P2_1/c",
        Lattice.monoclinic(5.1, 6.3, 7.2, 104.0),
        ["Zn", "O"],
        [[0.13, 0.27, 0.31], [0.41, 0.08, 0.77]],
    )
    hkl = [(1, 0, 1), (2, 0, 3), (0, 0, 1), (0, 1, 0), (0, 3, 0), (1, 0, 2), (0, 2, 0), (1, 1, 1)]
    f = _fsq(s, hkl)
    assert np.all(f[:5] < 1e-9)
    assert np.all(f[5:] > 1e-3)


def test_friedel_law_and_bijvoet() -> None:
    # non-centrosymmetric ZnS (F-43m): |F(h)| = |F(-h)| without anomalous terms, not with them
    zns = Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    hkl = [(1, 1, 1), (-1, -1, -1), (3, 3, 1), (-3, -3, -1)]
    f = _fsq(zns, hkl)
    assert f[0] == pytest.approx(f[1], rel=1e-12) and f[2] == pytest.approx(f[3], rel=1e-12)
    fa = _fsq(zns, hkl, anomalous=LAM)
    assert abs(fa[0] - fa[1]) / fa[0] > 1e-3
    # centrosymmetric NaCl keeps Friedel's law with anomalous scattering
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fn = _fsq(nacl, hkl, anomalous=LAM)
    assert fn[0] == pytest.approx(fn[1], rel=1e-12)
    # anomalous pattern from the full sphere equals the Friedel-halved one for a centrosymmetric crystal
    prof = ProfileParams.default(1)
    a = simulate(
        CrystalBatch.from_structures([nacl]),
        GRID,
        Instrument(Radiation.monochromatic(LAM), anomalous=True),
        prof,
    )
    b = simulate(CrystalBatch.from_structures([nacl]), GRID, CUKA1, prof)
    assert float((a - b).abs().max() / b.max()) < 0.2  # f′ changes intensities a little, positions not
    assert int(a.argmax()) == int(b.argmax())


def test_anomalous_powder_intensity_is_the_friedel_mean() -> None:
    """Anomalous scattering: the half-sphere |F|² is (|F(h)|² + |F(−h)|²)/2 for a non-centrosymmetric crystal
    (ZnS, where the two differ), and the pattern equals the full-sphere sum of |F(h)|² over h and −h."""
    zns = Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    plus = [(1, 1, 1), (3, 3, 1), (4, 2, 0), (5, 3, 1)]
    minus = [(-a, -b, -c) for a, b, c in plus]
    fp, fm = _fsq(zns, plus, anomalous=LAM), _fsq(zns, minus, anomalous=LAM)
    assert bool((np.abs(fp - fm) / fp > 1e-3).any())
    batch = CrystalBatch.from_structures([zns])
    d = 1.0 / np.linalg.norm(
        np.asarray(plus, dtype=float) @ zns.lattice.reciprocal_lattice_crystallographic.matrix, axis=1
    )
    mean = friedel_mean_f_squared_flat(
        batch, torch.tensor(plus), torch.zeros(len(plus), dtype=torch.long), torch.as_tensor(0.25 / d**2),
        wavelength=LAM,
    )  # fmt: skip
    assert np.allclose(mean.numpy(), 0.5 * (fp + fm), rtol=1e-12)
    # the intensities: Σ over the half sphere of 2 × mean == Σ over the full sphere of the explicit |F(h)|²
    inst = Instrument(Radiation.monochromatic(LAM), anomalous=True)
    half = bragg_intensities(batch, inst, two_theta_max=80.0)
    m_half = half.mask[0] & half.valid[0, :, 0]
    total_half = float((half.f_squared[0, :, 0] * half.multiplicity[0])[m_half].sum())
    d_min = float(half.d[0][m_half].min()) - 1e-9
    full, m_full = generate_hkl(batch.lattice, d_min, friedel=False)
    h_full = full[0][m_full[0]]
    g = h_full.double() @ torch.tensor(zns.lattice.reciprocal_lattice_crystallographic.matrix)
    re, im = structure_factor(batch, h_full[None], 0.25 * (g * g).sum(-1)[None], wavelength=LAM)
    assert int(m_full.sum()) == 2 * int(m_half.sum())
    assert total_half == pytest.approx(float((re**2 + im**2).sum()), rel=1e-10)


def _low_symmetry() -> Structure:
    return Structure(
        Lattice.from_parameters(5.3, 6.1, 7.4, 81.0, 97.0, 103.0),
        ["Ba", "Ti", "O", "O", "O"],
        [[0.1, 0.2, 0.3], [0.55, 0.45, 0.61], [0.8, 0.1, 0.05], [0.33, 0.72, 0.9], [0.6, 0.9, 0.4]],
    )


def _pattern(structures: list[Structure]) -> torch.Tensor:
    batch = CrystalBatch.from_structures(structures)
    prof = ProfileParams.default(len(structures), X=1.0, Y=2.0)
    out = simulate(batch, GRID, Instrument(Radiation.preset("CuKa")), prof)
    assert isinstance(out, torch.Tensor)
    return out


def test_origin_shift_setting_and_permutation_invariance() -> None:
    s = _low_symmetry()
    shifted = s.copy()
    shifted.translate_sites(list(range(len(s))), [0.137, -0.42, 0.29], frac_coords=True)
    permuted = Structure(s.lattice, list(reversed(s.species)), list(reversed(s.frac_coords)))
    # equivalent setting: cyclic relabelling of the axes (a, b, c) -> (b, c, a)
    m = s.lattice.matrix
    cyc = Structure(Lattice(np.roll(m, -1, axis=0)), s.species, np.roll(s.frac_coords, -1, axis=1))
    # and a different reduced cell of the same lattice (Niggli), atoms mapped by Cartesian position
    niggli = s.get_reduced_structure("niggli")
    y = _pattern([s, shifted, permuted, cyc, niggli])
    for i in range(1, 5):
        assert float((y[i] - y[0]).abs().max() / y[0].max()) < 1e-9, i


def test_supercell_gives_same_normalised_pattern() -> None:
    s = _low_symmetry()
    y = _pattern([s, s * (2, 1, 1)])
    assert float((y[1] / 4.0 - y[0]).abs().max() / y[0].max()) < 1e-9  # |F|² scales with n² = 4


def test_hkl_half_sphere() -> None:
    s = Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]])
    lat = CrystalBatch.from_structures([s]).lattice
    half, m1 = generate_hkl(lat, 1.0)
    full, m2 = generate_hkl(lat, 1.0, friedel=False)
    assert 2 * int(m1.sum()) == int(m2.sum())
    h = half[0][m1[0]]
    assert not bool(((h[:, None, :] == -h[None, :, :]).all(-1)).any())  # no Friedel mates kept
    d = 4.0 / torch.linalg.norm(full[0][m2[0]].double(), dim=1)
    assert float(d.min()) >= 1.0


def test_bragg_intensities_kalpha2_positions() -> None:
    s = Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]])
    refl = bragg_intensities(CrystalBatch.from_structures([s]), Instrument(Radiation.preset("CuKa")))
    first = refl.mask[0].nonzero()[0, 0]
    d = refl.d[0, first].item()
    for j, lam in enumerate((1.540593, 1.544427)):
        assert refl.two_theta[0, first, j].item() == pytest.approx(2 * math.degrees(math.asin(lam / (2 * d))))
    ratio = refl.intensity[0, first, 1] / refl.intensity[0, first, 0]
    lp = refl.lp[0, first]
    assert ratio.item() == pytest.approx(0.5 * (lp[1] / lp[0]).item())
