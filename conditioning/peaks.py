"""Quick peak picking on a pattern (for summaries and indexing seeds, not for refinement)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from xrdsolve.refine.indexing.observations import drop_kalpha2
from xrdsolve.refine.radiation import Radiation

from .pattern import Pattern, SigmaSource


@dataclass(frozen=True)
class PeakList:
    """Peaks found in a pattern, sorted by 2θ.

    two_theta : peak positions, degrees 2θ (parabolic interpolation of the smoothed maximum).
    d : d-spacings, Å (NaN when the pattern has no wavelength).
    height : smoothed intensity above the local baseline at the peak, pattern units.
    fwhm : full width at half maximum estimate, degrees 2θ.
    """

    two_theta: np.ndarray
    d: np.ndarray
    height: np.ndarray
    fwhm: np.ndarray

    def __len__(self) -> int:
        return int(self.two_theta.size)

    def without_kalpha2(self, radiation: Radiation | None) -> PeakList:
        """These peaks without the Kα2 partners of Kα1 lines (a peak at the second wavelength's position of a
        much stronger one: :func:`~xrdsolve.refine.indexing.observations.drop_kalpha2`) when ``radiation``
        has two lines; unchanged otherwise."""
        wavelengths = [] if radiation is None else list(radiation.wavelengths)
        if len(wavelengths) < 2 or len(self) == 0:
            return self
        keep = drop_kalpha2(self.two_theta, self.height, wavelengths[0], wavelengths[1])
        return PeakList(self.two_theta[keep], self.d[keep], self.height[keep], self.fwhm[keep])


def find_peaks(
    pattern: Pattern,
    *,
    min_prominence: float | None = None,
    smooth_points: int | None = None,
    max_peaks: int | None = 30,
) -> PeakList:
    """Find peaks in ``pattern``.

    The intensities are smoothed with a Savitzky–Golay filter (window ``smooth_points``, default
    about 0.05° or 5 points), peaks are local maxima with prominence at least ``min_prominence``
    (default: 5 × the median σ, and at least 1 % of the intensity range). Returns at most
    ``max_peaks`` of the most prominent, sorted by 2θ.
    """
    y = pattern.intensity
    n = y.size
    step = pattern.step
    if smooth_points is None:
        smooth_points = max(5, round(0.05 / step) | 1)
    window = min(smooth_points | 1, n - 1 if (n - 1) % 2 == 1 else n - 2)
    ys = signal.savgol_filter(y, window, 2) if window >= 3 else y.copy()
    if min_prominence is None:
        min_prominence = max(5.0 * float(np.median(pattern.sigma)), 0.01 * float(np.ptp(ys)))
    idx, props = signal.find_peaks(ys, prominence=min_prominence)
    prom = props["prominences"]
    if max_peaks is not None and idx.size > max_peaks:
        keep = np.sort(np.argsort(prom)[::-1][:max_peaks])
        idx, prom = idx[keep], prom[keep]
    return _peak_list(pattern, ys, idx, prom)


def _peak_list(pattern: Pattern, ys: np.ndarray, idx: np.ndarray, height: np.ndarray) -> PeakList:
    """The peaks at the maxima ``idx`` of the smoothed intensities ``ys``: positions refined by a parabola
    through the maximum and its neighbours, FWHM from the smoothed curve, d from the primary wavelength."""
    if idx.size == 0:
        empty = np.empty(0)
        return PeakList(empty, empty, empty, empty)
    tt = pattern.two_theta
    n = ys.size
    widths, _, _, _ = signal.peak_widths(ys, idx, rel_height=0.5)
    i0 = np.clip(idx, 1, n - 2)
    a, b, c = ys[i0 - 1], ys[i0], ys[i0 + 1]
    denom = a - 2 * b + c
    shift = np.where(denom != 0, 0.5 * (a - c) / np.where(denom != 0, denom, 1.0), 0.0)
    pos = np.interp(i0 + np.clip(shift, -1, 1), np.arange(n), tt)
    return PeakList(pos, d_spacings(pattern, pos), height, widths * np.gradient(tt)[idx])


def d_spacings(pattern: Pattern, two_theta: np.ndarray) -> np.ndarray:
    """d-spacings (Å) of lines at ``two_theta`` (degrees) at the pattern's primary wavelength; NaN when the
    pattern has no wavelength."""
    if pattern.radiation is None:
        return np.full(np.shape(two_theta), np.nan)
    return np.asarray(pattern.radiation.primary_wavelength / (2.0 * np.sin(np.deg2rad(two_theta) / 2.0)))


#: Significance (in σ of the counting noise) a peak of the smoothed pattern needs: maxima of Poisson noise
#: pass 7 about once in 40 patterns of 3000 points, 8 not once in 40 (tests/test_peaks.py).
MIN_PEAK_SIGNIFICANCE = 8.0
#: Window (in peak widths) within which a maximum's prominence is measured: ±3 FWHM, beyond a line's own
#: foot, so the deepest noise dip far away does not count as its base.
WLEN = 6.0


def significant_peaks(
    pattern: Pattern, *, min_significance: float = MIN_PEAK_SIGNIFICANCE, max_peaks: int | None = 40
) -> PeakList:
    """Peaks that stand out of the noise, weak ones included (indexing lines, extinctions).

    The pattern is smoothed over about one peak width (Savitzky–Golay, window the median FWHM of the
    strongest peaks of :func:`find_peaks`, those of at least a quarter of the highest). Each local maximum's
    prominence A within ±3 FWHM (height above the higher of its two bases, so the tails of a strong
    neighbour do not count) is scored as a Gaussian peak of that FWHM seen through its matched filter:
    significance = A·√(Σ g²)/σ, with g the unit-height Gaussian sampled on the grid and σ the pattern's σ at
    the maximum (counting or file σ; a local noise level measured from the second differences of the data
    when σ is unknown). Keeps maxima with significance ≥ ``min_significance``, at most ``max_peaks`` of the
    most significant, sorted by 2θ; ``height`` is the prominence.
    """
    tt = pattern.two_theta
    y = np.asarray(pattern.intensity, dtype=np.float64)
    n = y.size
    strong = find_peaks(pattern, max_peaks=10)
    if n < 7 or len(strong) == 0:
        return _peak_list(pattern, y, np.empty(0, dtype=np.int64), np.empty(0))
    step = float(np.median(np.diff(tt)))
    widths_of_strong = strong.fwhm[strong.height >= 0.25 * strong.height.max()]
    width_points = float(np.clip(np.median(widths_of_strong) / step, 2.0, 60.0))
    window = min(max(5, round(width_points) | 1), n - 1 if (n - 1) % 2 == 1 else n - 2)
    ys = signal.savgol_filter(y, window, 2)
    idx, props = signal.find_peaks(ys, prominence=0.0, wlen=round(WLEN * width_points) | 1)
    s = width_points / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    x = np.arange(-int(3 * s) - 1, int(3 * s) + 2)
    gain = float(np.sqrt(np.sum(np.exp(-((x / s) ** 2)))))
    prom = props["prominences"]
    significance = prom * gain / _noise_level(pattern, y, width_points)[idx]
    keep = significance >= min_significance
    if max_peaks is not None and keep.sum() > max_peaks:
        keep &= significance >= np.sort(significance[keep])[::-1][max_peaks - 1]
    return _peak_list(pattern, ys, idx[keep], prom[keep])


def _noise_level(pattern: Pattern, y: np.ndarray, width_points: float) -> np.ndarray:
    """σ per point: the pattern's own when known (counting statistics, file), else a running robust
    estimate from second differences (white noise: var(y₋ − 2y + y₊) = 6σ²) over about 50 peak widths."""
    if pattern.sigma_source is not SigmaSource.UNKNOWN:
        return np.maximum(np.asarray(pattern.sigma, dtype=np.float64), 1e-12)
    second = np.abs(np.convolve(y, [1.0, -2.0, 1.0], mode="same")) / np.sqrt(6.0)
    second[[0, -1]] = second[[1, -2]]
    local = ndimage.median_filter(second, size=max(3, int(50 * width_points) | 1), mode="nearest")
    floor = 1e-9 * max(float(np.max(np.abs(y))), 1e-300)
    return np.maximum(1.4826 * local, floor)
