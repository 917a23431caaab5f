"""Pattern invariants, σ estimation and axis conversions."""

from __future__ import annotations

import numpy as np
import pytest

from xrdsolve.conditioning import MissingWavelengthError, Pattern, PatternDataError, SigmaSource


def _pattern(**kw):
    tt = np.linspace(10, 80, 50)
    y = np.arange(50, dtype=float) * 10
    return Pattern.from_arrays(tt, y, **kw)


def test_counting_sigma_with_floor():
    p = _pattern()
    assert p.sigma_source is SigmaSource.COUNTING
    assert p.sigma[0] == 1.0  # zero counts -> floor of 1 count
    assert p.sigma[10] == pytest.approx(10.0)


def test_sigma_from_file_kept():
    tt = np.linspace(10, 20, 5)
    p = Pattern.from_arrays(tt, np.ones(5), np.full(5, 0.3))
    assert p.sigma_source is SigmaSource.FILE
    np.testing.assert_array_equal(p.sigma, 0.3)


def test_non_count_intensities_flag_sigma_unknown():
    tt = np.linspace(10, 20, 5)
    p = Pattern.from_arrays(tt, [0.1, -0.2, 0.5, 0.25, 0.05])
    assert p.sigma_source is SigmaSource.UNKNOWN
    assert (p.sigma > 0).all()


def test_q_and_d_need_a_wavelength():
    p = _pattern()
    with pytest.raises(MissingWavelengthError):
        p.q()
    pc = p.with_radiation("CuKa")
    d = pc.d()
    # Bragg: λ = 2 d sin θ with the primary (Kα1) wavelength
    np.testing.assert_allclose(2 * d * np.sin(np.deg2rad(pc.two_theta / 2)), 1.540593, rtol=1e-12)


def test_from_q_round_trip():
    q = np.linspace(1, 5, 20)
    p = Pattern.from_q(q, np.ones(20), radiation=0.5)
    np.testing.assert_allclose(p.q(), q, rtol=1e-12)


@pytest.mark.parametrize(
    ("tt", "y"),
    [
        ([1, 2, 2, 3], [1, 1, 1, 1]),  # duplicated 2θ
        ([1, 3, 2, 4], [1, 1, 1, 1]),  # non-monotonic
        ([1, 2, 3], [1, np.nan, 1]),  # NaN
        ([1, 2, 3], [1, 1]),  # mismatched lengths
        ([1], [1]),  # too short
        ([1, 2, np.inf], [1, 1, 1]),
    ],
)
def test_invariants_raise_pattern_data_error(tt, y):
    with pytest.raises(PatternDataError):
        Pattern(np.asarray(tt, float), np.asarray(y, float), np.ones(len(y)))


def test_arrays_are_read_only_and_crop():
    p = _pattern()
    with pytest.raises(ValueError):
        p.intensity[0] = 5
    c = p.cropped(20, 30)
    assert c.range[0] >= 20 and c.range[1] <= 30
    with pytest.raises(PatternDataError):
        p.cropped(200, 300)
