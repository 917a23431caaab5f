"""Powder indexing (xrdsolve.refine.indexing): figures of merit, synthetic sticks, space-group hints."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xrdsolve.refine.indexing import IndexingError, Peaks, de_wolff_m, index_peaks, smith_snyder_f
from xrdsolve.refine.indexing.extinctions import spacegroup_hints
from xrdsolve.refine.indexing.observations import drop_kalpha2, inv_d2
from xrdsolve.refine.indexing.solution import CellSolution, same_lattice

CU = 1.540593


def stick_peaks(
    structure: Structure, n: int = 25, zero: float = 0.03, noise: float = 0.01, seed: int = 0
) -> tuple[Peaks, float]:
    """First ``n`` pymatgen XRD sticks (Cu Kα1, I > 1 %) with a zero shift and uniform ±``noise`` (°)."""
    pat = XRDCalculator("CuKa1").get_pattern(structure, two_theta_range=(5, 100))
    tt = np.asarray(pat.x)[np.asarray(pat.y) > 1.0][:n]
    rng = np.random.default_rng(seed)
    return Peaks.from_two_theta(tt + zero + rng.uniform(-noise, noise, tt.size), CU), zero


def matches(solution: CellSolution, structure: Structure) -> bool:
    """Whether the solution's lattice is the structure's (primitive, Niggli-reduced) lattice."""
    prim = SpacegroupAnalyzer(structure).get_primitive_standard_structure().lattice
    return same_lattice(solution.reduced_lattice(), prim.get_niggli_reduced_lattice(), ltol=0.01, atol=1.0)


def load_cif(path: Path) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(path)


def test_de_wolff_m20_by_hand() -> None:
    q_obs = np.linspace(0.01, 0.20, 20)
    q_calc = q_obs + 1e-4
    q_all = np.concatenate([q_obs + 1e-4, [0.005, 0.015]])  # 22 calculated lines up to Q20
    m20 = de_wolff_m(q_obs, q_calc, q_all)
    assert m20 == pytest.approx(0.20 / (2 * 1e-4 * 21))  # 0.015+... one extra below Q20 besides 0.005
    f, n, delta, n_poss = smith_snyder_f(
        np.arange(1.0, 31.0), np.arange(1.0, 31.0) + 0.01, np.arange(1.0, 31.0)
    )
    assert (n, n_poss) == (30, 30)
    assert f == pytest.approx(30 / (0.01 * 30), rel=1e-6) and delta == pytest.approx(0.01)


def test_peaks_validation() -> None:
    with pytest.raises(IndexingError):
        Peaks.from_two_theta([], CU)
    with pytest.raises(IndexingError):
        Peaks.from_two_theta([10.0, 200.0], CU)
    with pytest.raises(IndexingError):
        Peaks.from_two_theta([10.0, 20.0], -1.0)
    with pytest.raises(IndexingError):
        index_peaks(Peaks.from_two_theta([10.0, 20.0, 30.0], CU))
    p = Peaks.from_d([3.0, 2.0, 1.5, 1.2, 1.0])
    assert not p.zero_allowed
    np.testing.assert_allclose(p.d, [3.0, 2.0, 1.5, 1.2, 1.0])
    np.testing.assert_allclose(inv_d2(p.two_theta, p.wavelength), 1 / p.d**2)


def test_drop_kalpha2() -> None:
    tt = np.array([40.0, 40.0 + 0.1, 60.0])
    s2 = np.sin(np.radians(40.0) / 2) * 1.544427 / CU
    tt[1] = 2 * np.degrees(np.arcsin(s2))
    keep = drop_kalpha2(tt, np.array([100.0, 50.0, 30.0]), CU, 1.544427)
    assert keep.tolist() == [True, False, True]


def test_cubic_f_ceo2_with_zero_shift() -> None:
    ceo2 = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.411), ["Ce", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    peaks, zero = stick_peaks(ceo2, zero=0.04)
    sols = index_peaks(peaks)
    best = sols[0]
    assert (best.crystal_system, best.centring) == ("cubic", "F")
    assert best.a == pytest.approx(5.411, abs=0.002)
    assert best.zero_shift == pytest.approx(zero, abs=0.01)
    assert best.m20 > 50 and best.n_unindexed == 0
    hints = spacegroup_hints(best, peaks)
    assert all(h.centring == "F" for h in hints[:3])
    assert 225 in [h.number for h in hints[:3]]


def test_three_lines_index_a_cubic_cell_only_when_asked() -> None:
    """Three lines (100, 200, 210 of a 4.08 Å P cell) test a cubic cell, one parameter: a cubic-only search
    with ``min_lines=3`` finds it; by default, or for systems with more parameters, three lines are refused."""
    a = 4.08
    d = a / np.sqrt([1.0, 4.0, 5.0])
    tt = 2.0 * np.degrees(np.arcsin(CU / (2.0 * d)))
    peaks = Peaks.from_two_theta(tt, CU)
    best = index_peaks(peaks, systems=("cubic",), min_lines=3)[0]
    assert (best.crystal_system, best.centring) == ("cubic", "P")
    assert best.a == pytest.approx(a, abs=0.002) and best.n_unindexed == 0
    with pytest.raises(IndexingError, match="at least 4 peaks"):
        index_peaks(peaks, systems=("cubic",))
    with pytest.raises(IndexingError, match="min_lines must be at least 4"):
        index_peaks(peaks, min_lines=3)


def test_large_cubic_cell_beats_a_smaller_orthorhombic_one_indexing_the_same_lines() -> None:
    """The 22 lines measured on a simulated Cs2KBiI6 pattern (double perovskite, Fm-3m, a 12.94 Å, zero shift
    and sample displacement about −0.07°): an orthorhombic I cell of 359 Å³ indexes them all (M20 110) in
    the first volume shell, where a search shell by shell stops; the cubic F cell (2,155 Å³ conventional,
    primitive 539 Å³ in the second shell) indexes them with one parameter and must come first."""
    two_theta = [11.783, 13.63, 19.353, 22.75, 23.78, 27.538, 30.886, 33.895, 36.038, 39.364, 41.233]
    two_theta += [44.237, 46.544, 48.737, 50.343, 52.947, 56.926, 62.585, 64.406, 71.447, 76.74, 84.809]
    sols = index_peaks(Peaks.from_two_theta(np.array(two_theta), 1.540593), max_solutions=5)
    best = sols[0]
    assert (best.crystal_system, best.centring) == ("cubic", "F")
    assert best.a == pytest.approx(12.916, abs=0.01) and best.n_unindexed == 0
    assert best.zero_shift == pytest.approx(-0.07, abs=0.02)
    assert all(s.volume < best.volume for s in sols[1:] if s.crystal_system == "orthorhombic")


def test_tetragonal_rutile_and_screw_axis_hints() -> None:
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3048, 0.3048, 0]]
    )
    peaks, _ = stick_peaks(rutile, zero=-0.03, seed=1)
    best = index_peaks(peaks)[0]
    assert best.crystal_system == "tetragonal" and matches(best, rutile)
    assert (best.a, best.c) == (pytest.approx(4.594, abs=0.002), pytest.approx(2.959, abs=0.002))
    numbers = [h.number for h in spacegroup_hints(best, peaks)[:3]]
    assert 136 in numbers


def test_hexagonal_fluorapatite_from_reference_cif(real_data: Path) -> None:
    fap = load_cif(real_data / "fluorapatite_xray_lab" / "fluorapatite_from_FAP_EXP.cif")
    peaks, zero = stick_peaks(fap, seed=2)
    best = index_peaks(peaks)[0]
    assert best.crystal_system == "hexagonal" and matches(best, fap)
    assert best.zero_shift == pytest.approx(zero, abs=0.01)


def test_orthorhombic_pbso4_and_pnma_hint(real_data: Path) -> None:
    pbso4 = load_cif(real_data / "pbso4_xray_lab" / "PbSO4.cif")
    peaks, _ = stick_peaks(pbso4, seed=3)
    sols = index_peaks(peaks)
    assert sols[0].crystal_system == "orthorhombic" and matches(sols[0], pbso4)
    assert 62 in [h.number for h in spacegroup_hints(sols[0], peaks)[:3]]


def test_d_spacing_input_without_zero() -> None:
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    peaks, _ = stick_peaks(nacl, zero=0.0, noise=0.005)
    best = index_peaks(Peaks.from_d(peaks.d))[0]
    assert best.centring == "F" and best.a == pytest.approx(5.64, abs=0.003) and best.zero_shift == 0.0


@pytest.mark.slow
def test_monoclinic_synthetic() -> None:
    lat = Lattice.monoclinic(5.2, 6.1, 7.3, 104.0)
    s = Structure.from_spacegroup("P2_1/c", lat, ["Zn", "O"], [[0.21, 0.13, 0.31], [0.62, 0.41, 0.12]])
    peaks, _ = stick_peaks(s, seed=4)
    sols = index_peaks(peaks, time_limit=120)
    assert sols and matches(sols[0], s)
    assert sols[0].crystal_system == "monoclinic"


@pytest.mark.parametrize("noise", [0.0005, 0.005])
def test_six_line_fcc_pattern_ranks_the_cubic_cell_above_sub_cells(noise: float) -> None:
    """Rock salt FeO to 100° 2θ has six lines; tetragonal sub-cells (a/2, a/√3) index them with a smaller misfit
    and a larger raw M20, but predict lines that are not observed. The ranking merit floors the misfit at the
    position precision, so the cubic F cell comes first."""
    from xrdsolve.refine.indexing.indexer import ranking_merit

    feo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.30), ["Fe", "O"], [[0, 0, 0], [0.5] * 3])
    peaks, _ = stick_peaks(feo, zero=0.0, noise=noise, seed=3)
    assert len(peaks) == 6
    sols = index_peaks(peaks)
    assert sols[0].crystal_system == "cubic" and sols[0].centring == "F"
    assert sols[0].a == pytest.approx(4.30, abs=0.002)
    assert ranking_merit(sols[0], 0.01) >= max(ranking_merit(s, 0.01) for s in sols)


def _hexagonal_lines(a: float, c: float, lam: float, tt_max: float) -> np.ndarray:
    q = {
        round(4.0 / 3.0 * (h * h + h * k + k * k) / a**2 + m * m / c**2, 9)
        for h in range(0, 8)
        for k in range(0, 8)
        for m in range(0, 8)
        if (h, k, m) != (0, 0, 0)
    }
    tt = np.degrees(2.0 * np.arcsin(np.sqrt(np.array(sorted(q))) * lam / 2.0 + 0j).real)
    return tt[(tt > 5.0) & (tt < tt_max)]


def test_subcell_keeping_the_metric_of_a_supercell_that_indexed_impurity_lines() -> None:
    """A hexagonal cell with c doubled indexes three weak extra lines as l-odd reflections; its c/2 sub-cell
    indexes every strong line. With ``same_metric`` only divisions keeping a = b are tried (a sub-cell with
    one a axis halved is not hexagonal), and ``complete`` keeps sub-cells that index every line."""
    from xrdsolve.refine.indexing.solution import CellSolution
    from xrdsolve.refine.indexing.subcells import strong_subcells

    lam, a, c = 1.5406, 7.569, 4.128
    tt = _hexagonal_lines(a, c, lam, 70.0)
    q_extra = [4.0 / 3.0 * hk / a**2 + 1.0 / (2 * c) ** 2 for hk in (1, 3, 4)]  # (h k ½) of the small cell
    tt_extra = np.degrees(2.0 * np.arcsin(np.sqrt(q_extra) * lam / 2.0))
    lines = np.concatenate([tt, tt_extra])
    heights = np.concatenate([np.ones(tt.size), np.full(3, 0.02)])
    empty = np.zeros(0)
    parent = CellSolution(
        "hexagonal", "P", a, a, 2 * c, 90.0, 90.0, 120.0, np.sqrt(3) / 2 * a * a * 2 * c, 0.0,
        100.0, 20, 80.0, 20, 0.01, 40, lines.size, 0,
        np.zeros((0, 3), dtype=int), empty.astype(bool), empty, empty, wavelength=lam,
    )  # fmt: skip
    subs = strong_subcells(
        parent, lines, heights, max_index=3, min_fraction=0.95, same_metric=True, complete=True
    )
    assert subs and subs[0].divisions == (1, 1, 2)
    assert subs[0].cell.c == pytest.approx(c) and subs[0].cell.crystal_system == "hexagonal"
    assert subs[0].n_lines - subs[0].n_indexed == 3 and subs[0].height_fraction > 0.99
    assert all(s.divisions[0] == s.divisions[1] for s in subs)
    assert not strong_subcells(parent, tt, np.ones(tt.size), max_index=3, min_fraction=0.95, same_metric=True)


def _cubic_cell(a: float, lines: np.ndarray, centring: str = "P") -> CellSolution:
    empty = np.zeros(0)
    return CellSolution(
        "cubic", centring, a, a, a, 90.0, 90.0, 90.0, a**3, 0.0, 100.0, 20, 80.0, 20, 0.01, 40,
        lines.size, 0, np.ones((lines.size, 3), dtype=int), empty.astype(bool), empty, lines, wavelength=CU,
    )  # fmt: skip


def _cubic_lines(a: float, tt_max: float = 100.0) -> np.ndarray:
    """2θ (degrees, Cu Kα1) of the distinct lines of a primitive cubic cell (every h² + k² + l²)."""
    n = np.array(sorted({h * h + k * k + m * m for h in range(8) for k in range(8) for m in range(8)} - {0}))
    s = np.sqrt(n) * CU / (2.0 * a)
    return np.degrees(2.0 * np.arcsin(s[s < np.sin(np.radians(tt_max / 2))]))


def test_supercells_of_a_cell_too_small_for_its_contents() -> None:
    """Diagonal supercells keep the crystal system, reach the volume asked for with the fewest-fold index
    and carry the line indices along; a cell already large enough has none."""
    from dataclasses import replace

    from xrdsolve.refine.indexing.subcells import supercells

    small = _cubic_cell(2.975, _cubic_lines(2.975))
    (big,) = supercells(small, min_volume=40.0)
    assert (
        big.crystal_system == "cubic"
        and big.a == pytest.approx(5.95)
        and big.volume == pytest.approx(5.95**3)
    )
    assert np.array_equal(big.hkl, 2 * small.hkl)
    assert supercells(small, min_volume=small.volume) == []
    tetragonal = replace(small, crystal_system="tetragonal", a=4.0, b=4.0, c=3.0, volume=48.0)
    subs = supercells(tetragonal, min_volume=80.0)
    assert [(s.a, s.b, s.c) for s in subs] == [(4.0, 4.0, 6.0)]  # (2, 2, 1) would be index 4
    assert [s.crystal_system for s in supercells(tetragonal, min_volume=150.0)] == ["tetragonal"]


def test_hexagonal_supercells_include_the_root3_cell() -> None:
    """A hexagonal P sub-cell (Yb3Si5's 3.99 × 4.25 Å, 58.5 Å³, where its P-62m cell is a 6.91 Å) has the
    √3 × √3 R30° cell among its index-3 supercells, with the line indices carried along (a' = 2a + b,
    b' = −a + b): every reflection of the sub-cell sits at the same d in the supercell."""
    from dataclasses import replace

    from pymatgen.core import Lattice

    from xrdsolve.refine.indexing.subcells import supercells

    hkl = np.array([[0, 0, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [2, -1, 1]])
    sub = replace(
        _cubic_cell(3.0, _cubic_lines(3.0)),
        crystal_system="hexagonal",
        a=3.98672,
        b=3.98672,
        c=4.24756,
        gamma=120.0,
        volume=58.47,
        hkl=hkl,
    )
    cells = supercells(sub, min_volume=140.0)
    shapes = sorted((round(c.a, 3), round(c.c, 3)) for c in cells)
    assert shapes == [(3.987, 12.743), (6.905, 4.248)]
    root3 = next(c for c in cells if c.a > 6.0)
    assert root3.crystal_system == "hexagonal" and root3.volume == pytest.approx(3 * 58.47)
    d_sub = Lattice.hexagonal(sub.a, sub.c).d_hkl
    d_sup = Lattice.hexagonal(root3.a, root3.c).d_hkl
    for old, new in zip(hkl, root3.hkl, strict=True):
        assert d_sup(new) == pytest.approx(d_sub(old), rel=1e-9)
    assert supercells(replace(sub, crystal_system="tetragonal", gamma=90.0), min_volume=140.0)[0].a == sub.a


def test_solve_tries_the_doubled_cubic_cell_when_superstructure_lines_are_unseen() -> None:
    """A Heusler compound (Cu₂MnAl, Fm-3m, a = 5.95 Å) whose odd-index lines are too weak to be measured
    indexes on its CsCl-type sub-cell (a/2, 26 Å³), too small for one formula unit (≈ 50 Å³). The solve's
    cell list then puts the doubled cell first, with Fm-3m among its extinction-compatible groups."""
    from pymatgen.core import Composition

    from xrdsolve.pipeline import SolveOptions, _with_supercells

    lines = _cubic_lines(2.975, 110.0)
    small = _cubic_cell(2.975, lines)
    peaks = Peaks.from_two_theta(lines, CU)
    record: list[dict] = []
    planned = _with_supercells([(small, [221])], peaks, Composition("Cu2MnAl"), SolveOptions(), record)
    assert [c.a for c, _ in planned] == [pytest.approx(5.95), 2.975]
    assert 225 in planned[0][1] and planned[1][1] == [221]
    assert len(record) == 1 and "a=5.95000" in record[0]["cell"]
    # a cell that holds a formula unit is left alone
    assert _with_supercells([(small, [221])], peaks, Composition("Cu"), SolveOptions(), []) == [
        (small, [221])
    ]


def _erpt3_with_an_impurity_line() -> object:
    """The six lines the peak search found in a benchmark pattern of Cu₃Au-type ErPt₃ (MP-20 val row 34, Pm-3m,
    a = 4.103 Å, whose 100 and 110 lines are < 0.5 %): 111, 200, 220, 311, 222 and an impurity line at
    21.55° 2θ, drawn as sharp Cu Kα1 peaks. The only cell that indexes all six is a tetragonal
    4.10 × 2.36 Å (40 Å³)."""
    from xrdsolve.conditioning.pattern import Pattern

    lines = [21.553, 37.951, 44.097, 64.137, 77.026, 81.159]
    heights = [5.5, 100.0, 43.0, 21.6, 19.9, 6.3]
    grid = np.arange(10.0, 90.0, 0.01)
    y = 2.0 + sum(
        100.0 * h * np.exp(-0.5 * ((grid - t) / 0.03) ** 2) for t, h in zip(lines, heights, strict=True)
    )
    return Pattern.from_arrays(grid, y, np.sqrt(y), radiation="CuKa1")


def test_a_best_cell_too_small_for_the_composition_triggers_the_retry_and_groups_that_hold_it() -> None:
    """Without the composition the tetragonal cell that indexes the impurity line wins (M6 ≈ 400, above the
    retry threshold). With it, that cell is seen to be too small for one ErPt₃ (≈ 60 Å³), indexing is
    retried allowing an unindexed line, and the 4.10 Å cubic cell comes first; its hinted groups are those
    whose Wyckoff sites hold one ErPt₃ (Pm-3m first), not the F groups its strong lines suggest (Fm-3m
    needs at least 4 formula units)."""
    from xrdsolve.pipeline import index_pattern

    pattern = _erpt3_with_an_impurity_line()
    blind, _ = index_pattern(pattern, time_limit=10.0)
    assert blind and blind[0][0].crystal_system != "cubic"
    cells, tried = index_pattern(pattern, time_limit=10.0, composition="ErPt3")
    first, groups = cells[0]
    assert first.crystal_system == "cubic" and first.a == pytest.approx(4.103, abs=0.01)
    assert groups[0] == 221 and 225 not in groups
    assert tried["indexing_unindexed_lines"]["passes"]
