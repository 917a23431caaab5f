"""Peak picking for indexing: weak lines of a noisy pattern are found, noise and peak tails are not."""

from __future__ import annotations

import numpy as np

from xrdsolve.conditioning import Pattern
from xrdsolve.conditioning.pattern import SigmaSource
from xrdsolve.conditioning.peaks import _noise_level, find_peaks, significant_peaks

TT = np.linspace(5.0, 90.0, 3000)  # the step of the solve benchmark's patterns (0.028°)
FWHM = 0.15


def _lines(centres: list[float], heights: list[float], lorentz: float = 0.0) -> np.ndarray:
    """Pseudo-Voigt lines (FWHM 0.15°, Lorentzian fraction ``lorentz``) on 40 counts of background."""
    y = np.full_like(TT, 40.0)
    for c, h in zip(centres, heights, strict=True):
        x = (TT - c) / (FWHM / 2)
        y += h * ((1 - lorentz) * np.exp(-np.log(2) * x**2) + lorentz / (1 + x**2))
    return y


def _noisy(mean: np.ndarray, seed: int) -> Pattern:
    counts = np.random.default_rng(seed).poisson(mean).astype(float)
    return Pattern.from_arrays(TT, counts, radiation="CuKa1")


def test_weak_lines_found_noise_left_out() -> None:
    """Strong lines of 5000 counts and weak ones of 40 (0.8 % lines on 40 counts of background, about 9 σ
    through the matched filter): the weak lines are each found in at least 18 of 20 noise draws, while the
    strong-line picker (1 % of the range) misses many of them; no maximum of the noise passes (at most 2 in
    all 20 draws of 3000 points)."""
    strong, weak = [20.0, 33.0, 47.5, 59.0], [23.3, 39.0, 69.5]
    mean = _lines(strong + weak, [5000.0] * 4 + [40.0] * 3)
    hits, old_hits, false = np.zeros(3), np.zeros(3), 0
    for seed in range(20):
        pattern = _noisy(mean, seed)
        found = significant_peaks(pattern).two_theta
        near = np.abs(found[:, None] - np.array(strong + weak)[None, :]) < FWHM
        assert near[:, :4].any(axis=0).all(), found
        hits += near[:, 4:].any(axis=0)
        false += int((~near.any(axis=1)).sum())
        old = find_peaks(pattern, max_peaks=40).two_theta
        old_hits += (np.abs(old[:, None] - np.array(weak)[None, :]) < FWHM).any(axis=0)
    assert (hits >= 18).all(), hits
    assert old_hits.sum() <= 0.7 * hits.sum(), (old_hits, hits)  # measured 34 of 60 vs 60 of 60
    assert false <= 2, false


def test_tails_of_strong_lines_are_not_peaks() -> None:
    """The Lorentzian tails of strong lines (10⁴ counts) rise far above the noise but have no maxima of their
    own: only the lines themselves come back."""
    centres = [28.0, 33.0, 48.0]
    pattern = _noisy(_lines(centres, [10000.0, 4000.0, 6000.0], lorentz=0.6), 1)
    found = significant_peaks(pattern).two_theta
    np.testing.assert_allclose(found, centres, atol=0.01)


def test_unknown_sigma_uses_the_measured_noise() -> None:
    """The same noisy pattern scaled to arbitrary units with σ unknown: the noise level measured from the data
    is the counting σ (√40 on the background, within 10 %), and the same lines, the weak one too, are found."""
    mean = _lines([20.0, 33.0, 39.0, 47.5], [400.0, 400.0, 40.0, 400.0])
    counts = _noisy(mean, 3)
    scaled = Pattern.from_arrays(TT, counts.intensity / 977.0, radiation="CuKa1")
    assert scaled.sigma_source is SigmaSource.UNKNOWN
    noise = 977.0 * _noise_level(scaled, np.asarray(scaled.intensity), FWHM / 0.0283)
    background = np.abs(TT - 70.0) < 10.0
    assert abs(np.median(noise[background]) / np.sqrt(40.0) - 1.0) < 0.1, np.median(noise[background])
    a, b = significant_peaks(counts).two_theta, significant_peaks(scaled).two_theta
    assert len(a) == 4, a
    assert (np.abs(b[:, None] - a[None, :]).min(axis=0) < 1e-6).all(), (a, b)
    assert len(b) <= len(a) + 1, b
