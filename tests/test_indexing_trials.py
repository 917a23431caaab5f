"""The TREOR-style monoclinic trial search (refine.indexing.trials) and its place in index_peaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from test_indexing import CU, matches, stick_peaks

from xrdsolve.refine.indexing import index_peaks
from xrdsolve.refine.indexing.observations import Peaks, d_inv_d2, inv_d2
from xrdsolve.refine.indexing.systems import MODELS
from xrdsolve.refine.indexing.trials import BASE_INDEX, _forms, base_inverses, monoclinic_trials

MONO = MODELS["monoclinic"]


def _params(lattice: Lattice) -> np.ndarray:
    """(A, B, C, E) of a monoclinic lattice with b unique (Å⁻²)."""
    r = lattice.reciprocal_lattice_crystallographic
    a, b, c = r.abc
    return np.array([a * a, b * b, c * c, 2 * a * c * np.cos(np.radians(r.beta))])


def test_every_base_choice_is_represented_up_to_relabelling() -> None:
    """Each non-singular ordered choice of four base reflections gives, up to a ↔ c and a → −a, the lattice of
    a kept choice: the pruning to one choice per orbit loses no trial."""
    choice, inverse = base_inverses()
    forms = _forms(BASE_INDEX)
    kept = {tuple(c) for c in choice.tolist()}
    assert len(kept) == len(choice)
    assert np.abs(forms).max() == BASE_INDEX and len(forms) == 38
    lookup = {tuple(f): i for i, f in enumerate(forms.tolist())}

    def canonical(f: tuple[int, int, int]) -> int:
        h, k, l_ = f
        if l_ < 0 or (l_ == 0 and h < 0):
            h, l_ = -h, -l_
        return lookup[(h, abs(k), l_)]

    rng = np.random.default_rng(0)
    design = MONO.design(forms)
    for row in rng.integers(0, len(forms), size=(400, 4)):
        x = design[row]
        if abs(np.linalg.det(x)) < 1e-9:
            continue
        images = [
            tuple(canonical(t(tuple(forms[i]))) for i in row)
            for t in (
                lambda f: f,
                lambda f: (f[2], f[1], f[0]),
                lambda f: (-f[0], f[1], f[2]),
                lambda f: (-f[2], f[1], f[0]),
            )
        ]
        assert any(im in kept for im in images)
    # the stored inverses are those of the kept choices' design matrices
    for i in rng.integers(0, len(choice), size=20):
        assert np.allclose(inverse[i] @ design[choice[i]], np.eye(4), atol=1e-4)


def test_trials_recover_a_monoclinic_metric_from_four_exact_lines() -> None:
    lattice = Lattice.monoclinic(7.34, 4.59, 5.29, 95.8)
    p = _params(lattice)
    hkl = MONO.hkl_candidates(p * 0.99, 0.5)
    q = np.unique(np.round(MONO.design(hkl) @ p, 10))[:12]
    trials = monoclinic_trials(q, np.full(q.size, 1e-6), v_min=0.0, v_max=2000.0, a_max=25.0)
    assert len(trials) > 0
    best = trials[0]
    found = Lattice.from_parameters(*MONO.cell(best))
    assert found.find_mapping(lattice, ltol=1e-3, atol=0.1) is not None


def test_index_peaks_finds_a_monoclinic_cell_by_trials_alone() -> None:
    """P2₁/c ZnO model (slow test_monoclinic_synthetic's structure) with a zero shift and ±0.01° noise: the trials
    give the cell, the shells' dichotomy is not needed."""
    lat = Lattice.monoclinic(5.2, 6.1, 7.3, 104.0)
    s = Structure.from_spacegroup("P2_1/c", lat, ["Zn", "O"], [[0.21, 0.13, 0.31], [0.62, 0.41, 0.12]])
    peaks, zero = stick_peaks(s, seed=4)
    lines = peaks.first(20)
    q = inv_d2(lines.two_theta, CU)
    trials = monoclinic_trials(q, d_inv_d2(lines.two_theta, CU) * 0.03, v_min=0, v_max=2000, a_max=25.0)
    assert len(trials) > 0
    sols = index_peaks(peaks, systems=("monoclinic",), time_limit=60)
    assert sols and matches(sols[0], s)
    assert abs(sols[0].zero_shift - zero) < 0.01


def test_trials_stop_at_the_deadline() -> None:
    """Past the deadline only the first four lines are given base reflections: the cell of exact lines is
    still found from them, among fewer trials than the full search of the fifteen choices of four lines."""
    lattice = Lattice.monoclinic(7.34, 4.59, 5.29, 95.8)
    p = _params(lattice)
    q = np.unique(np.round(MONO.design(MONO.hkl_candidates(p * 0.99, 0.5)) @ p, 10))[:12]
    tol = np.full(q.size, 1e-6)
    full = monoclinic_trials(q, tol, v_min=0.0, v_max=2000.0, a_max=25.0)
    first = monoclinic_trials(q, tol, v_min=0.0, v_max=2000.0, a_max=25.0, deadline=0.0)
    assert 0 < len(first) < len(full)
    assert (
        Lattice.from_parameters(*MONO.cell(first[0])).find_mapping(lattice, ltol=1e-3, atol=0.1) is not None
    )


@pytest.mark.parametrize(("row", "centring"), [(35, "C"), (77, "C")])
def test_benchmark_monoclinic_cells_beyond_the_dichotomy(shared_data: Path, row: int, centring: str) -> None:
    """V2CuO6 (C2/m, 212 Å³ conventional) and Ho2Cr2C3 (C2/m, 188 Å³), val rows 35 and 77 of the solve
    benchmark: on their measured-looking patterns the monoclinic dichotomy exceeds its box limit and neither
    cell was found; the trials find each, ranked first."""
    from xrdsolve.conditioning.peakfit import indexing_lines
    from xrdsolve.conditioning.peaks import significant_peaks
    from xrdsolve.generate.bench import simulate_patterns
    from xrdsolve.generate.data import load_split
    from xrdsolve.pipeline import FIT_PEAK_POSITIONS

    truth = load_split("mp20", "val")[row].structure
    pattern = simulate_patterns([truth] * (row + 1), seed=0)[row]
    lines = indexing_lines(pattern, significant_peaks(pattern, max_peaks=40), fit=FIT_PEAK_POSITIONS)
    peaks = Peaks.from_two_theta(lines.two_theta, CU, lines.height)
    sols = index_peaks(peaks, time_limit=30)
    assert sols and sols[0].crystal_system == "monoclinic" and sols[0].centring == centring
    assert matches(sols[0], truth)
