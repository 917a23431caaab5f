"""Prescreening by peak-group intensities (xrdsolve.prescreen) and the vectorised Wyckoff draws it uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import rutile
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xrdsolve.conditioning import Pattern
from xrdsolve.prescreen import (
    _lattice_positions,
    fwhm_model,
    group_intensities,
    misfit,
    peak_groups,
    prescreened_structures,
)
from xrdsolve.random_candidates import MIN_DISTANCE_FACTOR, WyckoffSampler, _covalent_radius
from xrdsolve.refine.bench import simulate_pattern
from xrdsolve.refine.physics import Instrument

GRID = np.arange(15.0, 110.0, 0.02)
RUTILE_CELL = (4.5937, 4.5937, 2.9587, 90.0, 90.0, 90.0)


def _rutile_with_o_x(x: float, b_iso: bool = True) -> Structure:
    """Rutile as :func:`conftest.rutile` with the O 4f coordinate x instead of 0.3048 (with ``b_iso`` False,
    B_iso 0 on every atom)."""
    s = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.5937, 2.9587), ["Ti", "O"], [[0, 0, 0], [x, x, 0]]
    )
    if b_iso:
        s.add_site_property("b_iso", [0.5 if str(site.specie) == "Ti" else 0.7 for site in s])
    return s


def _measured(structure: Structure, instrument: Instrument, seed: int) -> Pattern:
    sim = simulate_pattern(structure, GRID, instrument, seed=seed)
    return Pattern(sim.two_theta, sim.intensity, sim.sigma, radiation=sim.radiation)


def test_draws_sit_on_their_sites_keep_atoms_apart_and_differ() -> None:
    cell = RUTILE_CELL
    _, drawn = WyckoffSampler(136, ["Ti", "O"], [["2a"], ["4f"]], cell).draw(np.random.default_rng(1), 12)
    assert len(drawn) == 12
    radius_sum = _covalent_radius("Ti") + _covalent_radius("O")
    xs = set()
    for s in drawn:
        assert s.composition.reduced_formula == "TiO2" and len(s) == 6
        assert SpacegroupAnalyzer(s, 1e-3).get_space_group_number() in (136, 123, 127, 129, 139, 191)
        d = s.distance_matrix + np.eye(len(s)) * 99
        assert d.min() > MIN_DISTANCE_FACTOR * min(radius_sum, 2 * _covalent_radius("O"))
        o = [site.frac_coords for site in s if site.specie.symbol == "O"]
        xs.add(round(float(min(o[0][0], 1 - o[0][0])), 6))
    assert len(xs) == 12  # each draw has its own free coordinate
    # no free coordinate: one structure, whatever n
    cscl = WyckoffSampler(221, ["Cs", "Cl"], [["1a"], ["1b"]], (4.1,) * 3 + (90.0,) * 3)
    _, fixed = cscl.draw(np.random.default_rng(0), 5)
    assert len(fixed) == 1


def test_observed_group_intensities_follow_the_structure_factors() -> None:
    """Rutile simulated with Poisson noise: the group intensities extracted from the pattern are those of
    the true structure up to one scale (misfit ≤ 1 %), and O moved by 0.05 in x fits clearly worse."""
    truth = rutile()
    instrument = Instrument.lab("CuKa", anomalous=False)
    pattern = _measured(truth, instrument, 3)
    positions = _lattice_positions(truth.lattice, instrument.radiation.wavelengths, float(GRID[-1]))
    groups = peak_groups(pattern, positions, fwhm_model(pattern))
    assert 15 <= len(groups) <= positions.size
    assert np.all(groups.upper > groups.lower) and np.all(groups.lower[1:] > groups.upper[:-1])
    true_fit = misfit(group_intensities([truth], groups, instrument, 0.0), groups).min(axis=0)[0]
    wrong = _rutile_with_o_x(0.355)
    wrong_fit = misfit(group_intensities([wrong], groups, instrument, 0.0), groups).min(axis=0)[0]
    assert true_fit < 0.01
    assert wrong_fit > 5 * true_fit


def test_prescreened_draws_put_the_free_coordinate_near_the_truth() -> None:
    truth = rutile()
    instrument = Instrument.lab("CuKa", anomalous=False)
    pattern = _measured(truth, instrument, 4)
    out = prescreened_structures(
        pattern, Composition("TiO2"), 2, [136], 4, lattice=RUTILE_CELL, zero_shift=0.0, instrument=instrument
    )
    assert out, "no candidate"
    best, spec = out[0]
    # Ti on 2a or 2b, O on 4f or 4g: the same crystal by an origin shift of (½, ½, ½)
    assert spec.spacegroup == 136 and spec.extra["wyckoff"][1] in ("4f", "4g")
    assert spec.extra["drawn"] >= 48
    assert StructureMatcher(stol=0.15).fit(best, truth)  # O x within ≈ 0.02 of 0.3048
    misfits = [s.extra["prescreen_misfit"] for _, s in out]
    assert misfits[0] == pytest.approx(min(misfits))


def test_groups_wider_than_the_limit_leave_the_misfit() -> None:
    """A group spanning tens of degrees (broad overlapped peaks, background extrapolated under it) carries
    mostly background error: with its observed intensity wrong, the structure that fits every other group
    still has misfit 0; when every group is that wide, they all count."""
    from xrdsolve.prescreen import MAX_GROUP_WIDTH_DEG, PeakGroups, misfit_weights

    lower = np.array([10.0, 20.0, 30.0, 40.0])
    upper = np.array([10.5, 20.5, 30.5, 40.0 + 10 * MAX_GROUP_WIDTH_DEG])
    calculated = np.array([[100.0, 50.0, 20.0, 400.0]])
    observed = 2.0 * calculated[0] * np.array([1.0, 1.0, 1.0, -0.3])  # the wide group's background is off
    groups = PeakGroups(lower, upper, observed, np.full(4, 4.0), (0.1, 0.0))
    assert misfit_weights(groups)[3] == 0.0 and np.all(misfit_weights(groups)[:3] > 0)
    assert misfit(calculated, groups)[0] == pytest.approx(0.0, abs=1e-12)
    every = PeakGroups(lower - 50.0, upper, observed, np.full(4, 4.0), (0.1, 0.0))
    assert np.all(misfit_weights(every) > 0)
    assert misfit(calculated, every)[0] > 0.1


def test_deep_search_finds_ho2ge2os_where_the_ordinary_descents_miss(shared_data: Path) -> None:
    """Ho2Ge2Os (val row 75 of the solve benchmark; C2/m, five 4i sites, 10 free coordinates) in its
    indexed cell: the ordinary step (24 draws, the best 8 descended) ends in wrong minima, while two deep
    rounds (:func:`xrdsolve.prescreen._deep_round`) put the true structure among the DEEP_DISTINCT lowest
    distinct minima that go on as candidates."""
    from xrdsolve.generate.bench import simulate_patterns
    from xrdsolve.generate.data import load_split
    from xrdsolve.pipeline import index_pattern
    from xrdsolve.prescreen import (
        DEEP_DISTINCT,
        DISTINCT_MISFIT,
        DRAWS_PER_ASSIGNMENT,
        MINIMISE_STARTS,
        _deep_round,
    )
    from xrdsolve.refine.rietveld import _instrument_for
    from xrdsolve.trial_scorer import TrialScorer, reflections_for

    row = 75
    truth = load_split("mp20", "val")[row].structure
    pattern = simulate_patterns([truth] * (row + 1), seed=0)[row]
    cells, _ = index_pattern(pattern, time_limit=5.0, composition=truth.composition.reduced_formula)
    cell = cells[0][0]
    assert cell.centring == "C" and 12 in cells[0][1]
    lattice = (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    instrument, _ = _instrument_for(pattern, None, None, anomalous=False)
    sampler = WyckoffSampler(12, ["Ho", "Ge", "Os"], [["4i", "4i"], ["4i", "4i"], ["4i"]], lattice)
    positions = _lattice_positions(sampler.lattice, instrument.radiation.wavelengths, 90.0)
    groups = peak_groups(pattern, positions + cell.zero_shift, fwhm_model(pattern))
    scorer = TrialScorer([sampler], groups, reflections_for(sampler, groups, instrument, cell.zero_shift))
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)

    def lowest_distinct(points: np.ndarray, scores: np.ndarray, count: int) -> list[bool]:
        kept: list[float] = []
        found = []
        for i in np.argsort(scores, kind="stable"):
            if any(abs(scores[i] - k) <= DISTINCT_MISFIT * k for k in kept):
                continue
            kept.append(float(scores[i]))
            structure = sampler.structures(sampler.coordinates(points[i : i + 1, : sampler.n_sites]))[0]
            found.append(matcher.fit(structure, truth))
            if len(kept) == count:
                break
        return found

    rng = np.random.default_rng(0)
    draws = rng.random((DRAWS_PER_ASSIGNMENT, scorer.n_sites, 3))
    best = np.argsort(scorer.score(draws, np.zeros(len(draws), dtype=int), penalised=True))[:MINIMISE_STARTS]
    moved, moved_scores = scorer.minimise(draws[best], np.zeros(len(best), dtype=int))
    assert not any(lowest_distinct(moved, moved_scores, DEEP_DISTINCT))
    rounds = [_deep_round(scorer, 0, rng) for _ in range(2)]
    deep_points = np.concatenate([p for p, _ in rounds])
    deep_scores = np.concatenate([s for _, s in rounds])
    assert any(lowest_distinct(deep_points, deep_scores, DEEP_DISTINCT))
    assert deep_scores.min() < moved_scores.min()
