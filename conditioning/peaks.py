"""Quick peak picking on a pattern (for summaries and indexing seeds, not for refinement)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from .pattern import Pattern


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
    tt = pattern.two_theta
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
    if idx.size == 0:
        empty = np.empty(0)
        return PeakList(empty, empty, empty, empty)
    prom = props["prominences"]
    if max_peaks is not None and idx.size > max_peaks:
        keep = np.sort(np.argsort(prom)[::-1][:max_peaks])
        idx, prom = idx[keep], prom[keep]
    widths, _, _, _ = signal.peak_widths(ys, idx, rel_height=0.5)
    # parabolic refinement of the maximum position
    i0 = np.clip(idx, 1, n - 2)
    a, b, c = ys[i0 - 1], ys[i0], ys[i0 + 1]
    denom = a - 2 * b + c
    shift = np.where(denom != 0, 0.5 * (a - c) / np.where(denom != 0, denom, 1.0), 0.0)
    pos = np.interp(i0 + np.clip(shift, -1, 1), np.arange(n), tt)
    local_step = np.gradient(tt)[idx]
    fwhm = widths * local_step
    if pattern.radiation is not None:
        d = pattern.radiation.primary_wavelength / (2.0 * np.sin(np.deg2rad(pos) / 2.0))
    else:
        d = np.full(pos.shape, np.nan)
    return PeakList(pos, d, prom, fwhm)
