"""Batched peak-group misfit of Wyckoff trials (xrdsolve.trial_scorer): the same numbers as the
per-structure path of xrdsolve.prescreen, and a local descent that finds rutile's oxygen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import rutile
from test_prescreen import GRID, RUTILE_CELL, _measured, _rutile_with_o_x

from xrdsolve.prescreen import _lattice_positions, fwhm_model, group_intensities, misfit, peak_groups
from xrdsolve.random_candidates import WyckoffSampler
from xrdsolve.refine.physics import Instrument
from xrdsolve.trial_scorer import TrialScorer, reflections_for


@pytest.fixture(scope="module")
def rutile_groups():
    instrument = Instrument.lab("CuKa", anomalous=False)
    pattern = _measured(rutile(), instrument, 3)
    positions = _lattice_positions(rutile().lattice, instrument.radiation.wavelengths, float(GRID[-1]))
    return peak_groups(pattern, positions, fwhm_model(pattern)), instrument


@pytest.mark.parametrize(
    ("spacegroup", "combo", "cell"),
    [
        (136, [["2a"], ["4f"]], RUTILE_CELL),  # tetragonal, Laue 4/mmm merging
        (58, [["2a"], ["4g"]], RUTILE_CELL),  # orthorhombic
        (12, [["2a"], ["4i"]], (5.0, 4.0, 3.0, 90.0, 100.0, 90.0)),  # monoclinic C-centred
        (139, [["2a"], ["4e"]], (4.59, 4.59, 5.9, 90.0, 90.0, 90.0)),  # I-centred
        (225, [["4a"], ["24e"]], (8.0, 8.0, 8.0, 90.0, 90.0, 90.0)),  # F-centred
        (2, [["1a", "1h"], ["2i", "2i"]], (4.59, 4.61, 2.96, 89.0, 91.0, 92.0)),  # triclinic
    ],
)
def test_scorer_reproduces_the_structure_path(rutile_groups, spacegroup, combo, cell) -> None:
    """Group intensities and misfits of 16 random draws agree with :func:`group_intensities` on the
    pymatgen Structures (which lists and sums every reflection of each structure) to 1e-4."""
    groups, instrument = rutile_groups
    sampler = WyckoffSampler(spacegroup, ["Ti", "O"], combo, cell)
    points, structures = sampler.draw(np.random.default_rng(0), 16)
    assert len(structures) >= 8
    scorer = TrialScorer([sampler], groups, reflections_for(sampler, groups, instrument, 0.0))
    reference = group_intensities(structures, groups, instrument, 0.0)
    with torch.no_grad():
        ours = scorer.group_intensities(torch.as_tensor(points), torch.zeros(len(points), dtype=torch.long))
    ours = ours.double().numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1e-4 * reference.max()
    expected = misfit(reference, groups).min(axis=0)
    np.testing.assert_allclose(
        scorer.score(points, np.zeros(len(points), int)), expected, rtol=1e-4, atol=1e-7
    )


@pytest.mark.parametrize(
    ("spacegroup", "combo", "cell"),
    [(136, [["2a"], ["4f"]], RUTILE_CELL), (12, [["2a"], ["4i"]], (5.0, 4.0, 3.0, 90.0, 100.0, 90.0))],
)
def test_scorer_uses_neutron_scattering_lengths(spacegroup, combo, cell) -> None:
    """With a constant-wavelength neutron instrument the scorer scatters with the coherent lengths (Ti's is
    negative, O's positive: X-ray form factors give other intensities) and reproduces the structure path."""
    from xrdsolve.refine.radiation import Radiation

    instrument = Instrument(Radiation.monochromatic(1.594, probe="neutron"))
    pattern = _measured(rutile(), instrument, 3)
    positions = _lattice_positions(rutile().lattice, instrument.radiation.wavelengths, float(GRID[-1]))
    groups = peak_groups(pattern, positions, fwhm_model(pattern))
    sampler = WyckoffSampler(spacegroup, ["Ti", "O"], combo, cell)
    points, structures = sampler.draw(np.random.default_rng(0), 16)
    reflections = reflections_for(sampler, groups, instrument, 0.0)
    assert reflections.neutron
    scorer = TrialScorer([sampler], groups, reflections)
    reference = group_intensities(structures, groups, instrument, 0.0)
    with torch.no_grad():
        ours = scorer.group_intensities(torch.as_tensor(points), torch.zeros(len(points), dtype=torch.long))
    assert np.abs(ours.double().numpy() - reference).max() <= 1e-4 * reference.max()


def test_groups_without_misfit_weight_cost_no_reflections(rutile_groups) -> None:
    """Merged into one group wider than MAX_GROUP_WIDTH_DEG (as a synchrotron pattern of a large cell merges
    its high-angle lines), the groups past 60° get no weight in the misfit: the scorer leaves out the
    reflections reaching the counted groups only with their tails and gets the misfits of the structure
    path over every reflection to 1e-3."""
    from dataclasses import replace

    from xrdsolve.prescreen import MAX_GROUP_WIDTH_DEG, misfit_weights

    groups, instrument = rutile_groups
    low = groups.upper < 60.0
    n = int(low.sum())
    tail = ~low
    merged = replace(
        groups,
        lower=np.r_[groups.lower[low], groups.lower[tail][0]],
        upper=np.r_[groups.upper[low], groups.upper[tail][-1]],
        observed=np.r_[groups.observed[low], groups.observed[tail].sum()],
        variance=np.r_[groups.variance[low], groups.variance[tail].sum()],
    )
    assert merged.upper[-1] - merged.lower[-1] > MAX_GROUP_WIDTH_DEG and misfit_weights(merged)[-1] == 0
    sampler = WyckoffSampler(136, ["Ti", "O"], [["2a"], ["4f"]], RUTILE_CELL)
    everything = reflections_for(sampler, groups, instrument, 0.0)
    reflections = reflections_for(sampler, merged, instrument, 0.0)
    assert len(reflections.hkl) < 0.6 * len(everything.hkl)
    points, structures = sampler.draw(np.random.default_rng(1), 16)
    scorer = TrialScorer([sampler], merged, reflections)
    reference = group_intensities(structures, merged, instrument, 0.0)
    with torch.no_grad():
        ours = scorer.group_intensities(torch.as_tensor(points), torch.zeros(len(points), dtype=torch.long))
    assert np.abs(ours.double().numpy()[..., :n] - reference[..., :n]).max() <= 1e-4 * reference.max()
    np.testing.assert_allclose(
        scorer.score(points, np.zeros(len(points), int)),
        misfit(reference, merged).min(axis=0),
        rtol=1e-3,  # the left-out reflections' profile tails in the counted groups
        atol=1e-7,
    )


def test_local_descent_finds_rutile_oxygen(rutile_groups) -> None:
    """From 16 random O 4f positions the descent ends at (or below) the misfit of the true coordinates
    with the scorer's overall B, O x within 0.005 of 0.3048 (x or its image 1 − x); the random draws
    themselves mostly do not."""
    groups, instrument = rutile_groups
    sampler = WyckoffSampler(136, ["Ti", "O"], [["2a"], ["4f"]], RUTILE_CELL)
    scorer = TrialScorer([sampler], groups, reflections_for(sampler, groups, instrument, 0.0))
    points = sampler.draw_points(np.random.default_rng(5), 16)
    truth_fit = misfit(
        group_intensities([_rutile_with_o_x(0.3048, b_iso=False)], groups, instrument, 0.0), groups
    ).min()
    which = np.zeros(len(points), int)
    before = scorer.score(points, which, penalised=True)
    moved, after = scorer.minimise(points, which)
    assert np.all(after <= before + 1e-6)
    assert np.median(before) > 3 * truth_fit
    best = int(np.argmin(after))
    assert after[best] <= 1.05 * truth_fit
    o = sampler.coordinates(moved[best : best + 1])[0][2]  # the first O of the 4f orbit (x, x, 0)
    x = float(o[0])
    assert min(abs(x - 0.3048), abs(x - 0.6952)) < 0.005


def test_overlap_penalty_is_zero_apart_and_positive_on_top() -> None:
    sampler = WyckoffSampler(136, ["Ti", "O"], [["2a"], ["4f"]], RUTILE_CELL)
    groups = peak_groups(
        _measured(rutile(), Instrument.lab("CuKa", anomalous=False), 1),
        np.array([27.4, 36.1]),
        (0.1, 0.0),
    )
    scorer = TrialScorer(
        [sampler], groups, reflections_for(sampler, groups, Instrument.lab("CuKa", anomalous=False), 0.0)
    )
    apart = torch.tensor([[[0.0, 0.0, 0.0], [0.3048, 0.3048, 0.0]]])
    on_top = torch.tensor([[[0.0, 0.0, 0.0], [0.02, 0.02, 0.0]]])  # O 0.13 Å from Ti
    zero = torch.zeros(1, dtype=torch.long)
    assert float(scorer.overlap(apart, zero)[0]) == 0.0
    assert float(scorer.overlap(on_top, zero)[0]) > 0.5


def test_assignments_scored_together_score_as_alone(rutile_groups) -> None:
    """Two assignments of one group with different numbers of sites and atoms in one scorer (padded
    points and atoms) give each trial the score it gets from a scorer of its own assignment."""
    groups, instrument = rutile_groups
    one = WyckoffSampler(136, ["Ti", "O"], [["2a"], ["4f"]], RUTILE_CELL)
    two = WyckoffSampler(136, ["Ti", "O"], [["2a", "2b"], ["4f", "4g"]], RUTILE_CELL)
    reflections = reflections_for(one, groups, instrument, 0.0)
    together = TrialScorer([one, two], groups, reflections)
    rng = np.random.default_rng(2)
    points = rng.random((10, 4, 3))
    which = np.array([0, 1] * 5)
    joint = together.score(points, which, penalised=True)
    alone_one = TrialScorer([one], groups, reflections).score(
        points[which == 0, :2], np.zeros(5, int), penalised=True
    )
    alone_two = TrialScorer([two], groups, reflections).score(
        points[which == 1], np.zeros(5, int), penalised=True
    )
    np.testing.assert_allclose(joint[which == 0], alone_one, rtol=1e-5)
    np.testing.assert_allclose(joint[which == 1], alone_two, rtol=1e-5)
    assert not np.allclose(alone_one, alone_two)
