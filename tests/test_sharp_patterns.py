"""Sharp, long (synchrotron) patterns: the screening fits stop at d = 1 Å and the lattice annealing broadens in
proportion to the peak width — a 0.41 Å pattern of 49,494 points once grew a solve to 21 GB."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xrdsolve.conditioning import Pattern
from xrdsolve.pipeline import SCREEN_D_MIN, SCREEN_MIN_POINTS, screening_two_theta_max
from xrdsolve.refine.bench import make_benchmark_problem
from xrdsolve.refine.params import parameterize
from xrdsolve.refine.physics.profile import tch_widths
from xrdsolve.refine.radiation import Radiation
from xrdsolve.refine.rietveld import (
    ANNEALING_REFERENCE_FWHM,
    RefineOptions,
    RietveldModel,
    _initial_theta,
    _instrument_for,
    annealing_scale,
)


def _flat(lo: float, hi: float, points: int, radiation: Radiation | None) -> Pattern:
    tt = np.linspace(lo, hi, points)
    return Pattern.from_arrays(tt, np.full(points, 100.0), radiation=radiation)


def test_screening_stops_at_one_angstrom_on_short_wavelengths() -> None:
    """0.41 Å to 50° (d 0.48 Å): the screening fits end at 2θ = 2 asin(λ / 2 Å) = 23.85°. A Cu Kα pattern to
    90° (d 1.09 Å), a pattern ending before the limit, one left with too few points below it and one without
    a wavelength keep their whole range."""
    sync = _flat(1.0, 50.0, 49_494, Radiation.monochromatic(0.41326))
    limit = screening_two_theta_max(sync, None)
    assert limit == pytest.approx(math.degrees(2 * math.asin(0.41326 / (2 * SCREEN_D_MIN))), abs=1e-9)
    assert 23.8 < limit < 23.9
    assert screening_two_theta_max(_flat(5.0, 90.0, 4_251, Radiation.parse("CuKa")), None) is None
    assert screening_two_theta_max(_flat(1.0, 20.0, 20_000, Radiation.monochromatic(0.41326)), None) is None
    few = _flat(23.0, 50.0, 2 * SCREEN_MIN_POINTS, Radiation.monochromatic(0.41326))
    assert screening_two_theta_max(few, None) is None
    assert screening_two_theta_max(_flat(1.0, 50.0, 49_494, None), None) is None


@pytest.mark.parametrize("fwhm", [0.01, 0.02, 0.1])
def test_annealing_shrinks_with_the_peak_width(fwhm: float) -> None:
    """The annealing schedule's factor is the candidates' FWHM at the pattern's middle over 0.04°, at most 1:
    0.25 for 0.01° synchrotron peaks, unchanged for 0.1° lab peaks."""
    pattern, _, cands = make_benchmark_problem(3, seed=2)
    inst, start = _instrument_for(pattern, None, None)
    model = RietveldModel(pattern, [[parameterize(c) for c in cands]], inst, RefineOptions())
    theta, _, _ = _initial_theta(model, start, fwhm)  # a Gaussian of this FWHM: W only
    for name in ("X", "Y"):
        theta[:, model.layout.phase_profile_index(0, name)] = 0.0
    middle = torch.deg2rad(model.two_theta[model.two_theta.shape[0] // 2] / 2)
    zero = torch.zeros((), dtype=torch.float64)
    w = torch.tensor((fwhm * 100.0) ** 2 / (8 * math.log(2)), dtype=torch.float64)
    at_middle = float(tch_widths(middle, zero, zero, w, zero, zero)[0])
    assert at_middle == pytest.approx(fwhm, rel=1e-6)
    assert annealing_scale(model, theta) == pytest.approx(min(1.0, fwhm / ANNEALING_REFERENCE_FWHM), rel=1e-6)
