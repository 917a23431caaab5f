"""Peak positions by profile fitting: each cluster of picked peaks is fitted with split pseudo-Voigt lines (a
Kα1/Kα2 doublet per line for tube radiation) on a linear local background, weighted by the pattern's σ.

The maximum of a smoothed Kα1 + Kα2 blend lies between the two lines: by up to a third of their separation
(0.03° at 2θ = 35° on Cu Kα, the indexing tolerance) when the peaks are broader than the doublet splitting,
and the bias grows with tan θ, so no zero shift absorbs it. Fitting the doublet puts each line at its Kα1
position, and a fit of the raw counts locates narrow peaks (two or three points per FWHM) better than a
parabola through a smoothed maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .pattern import Pattern
from .peaks import PeakList, d_spacings

_FOUR_LN2 = 4.0 * math.log(2.0)
#: Half-width of the window fitted around each line, in FWHM (beyond the Kα2 partner on the high side).
WINDOW_FWHM = 2.5
#: Largest number of lines fitted together in one cluster (clusters are split at their widest gap).
MAX_LINES_PER_FIT = 8
#: A fitted line moved by more than this many FWHM from its seed is not trusted: the seed is kept.
MAX_MOVE_FWHM = 0.75
#: Largest skew of a line: its half-widths below and above the maximum are FWHM·(1 ± skew)/2 (a split
#: pseudo-Voigt), so the asymmetric lines of a lab instrument (axial divergence) are located at their
#: maximum, as a symmetric profile would not be.
MAX_SKEW = 0.5
#: A fitted line broader than SPLIT_WIDTH × the width trend is tried as two lines of the trend's width ...
SPLIT_WIDTH = 1.2
#: ... which replace it when they lower χ² of its window by at least SPLIT_CHI2 (5 σ of a matched filter;
#: the pair's widths are held near the trend, so it has no more freedom than the broad line) and lie at
#: least SPLIT_MIN_SEPARATION trend widths apart.
SPLIT_CHI2 = 25.0
SPLIT_MIN_SEPARATION = 0.3


@dataclass(frozen=True)
class _Doublet:
    """Second wavelength of tube radiation: its intensity relative to the first and λ2/λ1."""

    ratio: float
    lambda_ratio: float

    def offset(self, two_theta: np.ndarray) -> np.ndarray:
        """2θ(λ2) − 2θ(λ1) (degrees) of lines at ``two_theta`` (degrees, λ1)."""
        s = np.minimum(np.sin(np.radians(two_theta) / 2.0) * self.lambda_ratio, 1.0)
        return np.asarray(2.0 * np.degrees(np.arcsin(s)) - two_theta)


def _doublet_of(pattern: Pattern) -> _Doublet | None:
    rad = pattern.radiation
    if rad is None or len(rad.wavelengths) < 2:
        return None
    w = np.asarray(rad.weights, dtype=float)
    first = int(np.argmax(w))
    second = int(np.argsort(w)[-2])
    return _Doublet(float(w[second] / w[first]), rad.wavelengths[second] / rad.wavelengths[first])


def _pseudo_voigt(x: np.ndarray, fwhm: np.ndarray, eta: float) -> np.ndarray:
    """Unit-height pseudo-Voigt at offsets ``x`` (degrees) for widths ``fwhm`` (degrees), mixing ``eta``."""
    z = (x / fwhm) ** 2
    return np.asarray(eta / (1.0 + 4.0 * z) + (1.0 - eta) * np.exp(-_FOUR_LN2 * z))


def _split_widths(dx: np.ndarray, fwhm: np.ndarray, skew: np.ndarray) -> np.ndarray:
    """Widths of split lines: FWHM·(1 + skew) below the maximum (dx < 0), FWHM·(1 − skew) above it."""
    return np.where(dx < 0.0, fwhm * (1.0 + skew), fwhm * (1.0 - skew))


def _model(params: np.ndarray, x: np.ndarray, x_mid: float, n: int, doublet: _Doublet | None) -> np.ndarray:
    """Background b0 + b1 (x − x_mid) plus n split lines (position of the maximum, height, FWHM) sharing one η
    and one skew."""
    b0, b1, eta, skew = params[0], params[1], params[2], params[3]
    pos, height, fwhm = (
        params[4 : 4 + n, None],
        params[4 + n : 4 + 2 * n, None],
        params[4 + 2 * n : 4 + 3 * n, None],
    )
    dx = x[None, :] - pos
    y = height * _pseudo_voigt(dx, _split_widths(dx, fwhm, skew), eta)
    if doublet is not None:
        dx2 = dx - doublet.offset(pos)
        y = y + doublet.ratio * height * _pseudo_voigt(dx2, _split_widths(dx2, fwhm, skew), eta)
    return np.asarray(b0 + b1 * (x - x_mid) + y.sum(0))


def _inside(bound: np.ndarray, direction: float) -> np.ndarray:
    """Finite bounds nudged inwards (a start exactly on a bound is outside for least_squares)."""
    finite = np.isfinite(bound)
    return np.where(finite, bound + direction * 1e-9 * (np.abs(np.where(finite, bound, 0.0)) + 1.0), bound)


def _residual(
    p: np.ndarray, x: np.ndarray, y: np.ndarray, s: np.ndarray, x_mid: float, n: int, doublet: _Doublet | None
) -> np.ndarray:
    return (_model(p, x, x_mid, n, doublet) - y) / s


def _clusters(pos: np.ndarray, reach_lo: np.ndarray, reach_hi: np.ndarray) -> list[np.ndarray]:
    """Groups of consecutive lines whose fit windows overlap, at most MAX_LINES_PER_FIT each."""
    groups: list[list[int]] = [[0]] if pos.size else []
    for i in range(1, pos.size):
        if reach_lo[i] <= reach_hi[groups[-1][-1]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    out: list[np.ndarray] = []
    stack = [np.asarray(g) for g in groups]
    while stack:
        g = stack.pop(0)
        if g.size <= MAX_LINES_PER_FIT:
            out.append(g)
            continue
        cut = int(np.argmax(np.diff(pos[g]))) + 1
        stack[:0] = [g[:cut], g[cut:]]
    return out


@dataclass
class _Lines:
    """Lines of one fit: positions (degrees 2θ), heights (counts), FWHM (degrees)."""

    pos: np.ndarray
    height: np.ndarray
    fwhm: np.ndarray


@dataclass
class _WindowFit:
    """The fit of one window: its lines, a mask of lines not pinned at their position bound, χ² and the
    lines' shared skew."""

    lines: _Lines
    free: np.ndarray
    chi2: float
    skew: float


def _fit_window(
    x: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    start: _Lines,
    move: np.ndarray,
    width_bounds: tuple[np.ndarray, np.ndarray],
    doublet: _Doublet | None,
) -> _WindowFit | None:
    """Least-squares fit of the lines ``start`` to (x, y ± s), positions within ±``move`` degrees of their
    start; None when the fit fails."""
    n = start.pos.size
    x_mid = 0.5 * float(x[0] + x[-1])
    base = float(np.percentile(y, 10))
    p0 = np.concatenate([[base, 0.0, 0.5, 0.0], start.pos, np.maximum(start.height, 1e-9), start.fwhm])
    lower = np.concatenate(
        [[-np.inf, -np.inf, 0.0, -MAX_SKEW], start.pos - move, np.zeros(n), width_bounds[0]]
    )
    upper = np.concatenate(
        [[np.inf, np.inf, 1.0, MAX_SKEW], start.pos + move, np.full(n, np.inf), width_bounds[1]]
    )
    p0 = np.clip(p0, _inside(lower, +1.0), _inside(upper, -1.0))
    try:
        fit = least_squares(
            _residual, p0, bounds=(lower, upper), x_scale="jac", max_nfev=60 * (3 * n + 4),
            args=(x, y, s, x_mid, n, doublet),
        )  # fmt: skip
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not fit.success or not np.all(np.isfinite(fit.x)):
        return None
    p = fit.x
    lines = _Lines(p[4 : 4 + n], p[4 + n : 4 + 2 * n], p[4 + 2 * n : 4 + 3 * n])
    # a line pinned at its bound moved as far as it was allowed: not a fitted position
    free = (np.abs(lines.pos - start.pos) < 0.99 * move) & (lines.height > 0)
    return _WindowFit(lines, free, float(np.sum(fit.fun**2)), float(p[3]))


def _width_trend(pos: np.ndarray, fwhm: np.ndarray, height: np.ndarray) -> np.ndarray | None:
    """FWHM (degrees) expected at ``pos`` from a straight line in tan θ through the lines' widths, fitted with
    the broadest (blends) left out; None with fewer than five lines."""
    if pos.size < 5:
        return None
    t = np.tan(np.radians(pos) / 2.0)
    use = height >= 0.05 * height.max()
    if use.sum() < 5:
        return None
    trend = np.full(pos.shape, float(np.median(fwhm[use])))
    for _ in range(3):
        inlier = use & (fwhm <= 1.15 * trend)
        if inlier.sum() < 4:
            break
        slope, intercept = np.polyfit(t[inlier], fwhm[inlier], 1)
        trend = np.maximum(intercept + slope * t, 0.5 * float(np.median(fwhm[use])))
    return trend


def fit_peak_positions(pattern: Pattern, peaks: PeakList) -> PeakList:
    """``peaks`` with positions (degrees 2θ, the Kα1 line for tube radiation), heights and FWHM refined by a
    least-squares profile fit of the raw intensities around them.

    ``peaks`` should hold Kα1 lines only (:meth:`PeakList.without_kalpha2`): the Kα2 partner of each is part
    of its model. Lines whose fit fails, moves them by more than ``MAX_MOVE_FWHM`` of their width, or needs
    the whole ``MAX_SKEW`` keep their picked values. A line fitted more than SPLIT_WIDTH times broader than
    the pattern's width trend is an unresolved pair when two lines of the trend's width fit its window better
    by at least SPLIT_CHI2 (scaled by the median reduced χ² of the one-line windows): both are returned;
    otherwise it keeps its picked maximum (a blend's fitted centre lies between its lines, where indexing
    finds none, while the maximum sits on the strongest).
    """
    if len(peaks) == 0:
        return peaks
    x_all, y_all = pattern.two_theta, pattern.intensity
    sigma = np.maximum(pattern.sigma, 1e-12)
    doublet = _doublet_of(pattern)
    step = float(np.median(np.diff(x_all)))
    order = np.argsort(peaks.two_theta)
    seed_pos = peaks.two_theta[order]
    seed_h = np.maximum(peaks.height[order], 1e-12)
    # widths: the picked FWHM of a blend overestimates its lines, so start from the smaller of each line's
    # own estimate and the median over the stronger lines, never below two grid steps
    strong = seed_h >= 0.25 * seed_h.max()
    typical = float(np.median(peaks.fwhm[order][strong]))
    seed_w = np.clip(np.minimum(peaks.fwhm[order], 1.5 * typical), 2.0 * step, None)
    split = doublet.offset(seed_pos) if doublet is not None else np.zeros_like(seed_pos)
    reach_lo = seed_pos - WINDOW_FWHM * seed_w
    reach_hi = seed_pos + split + WINDOW_FWHM * seed_w
    pos, height, fwhm = seed_pos.copy(), seed_h.copy(), seed_w.copy()
    fit_pos = seed_pos.copy()
    fitted = np.zeros(pos.size, dtype=bool)
    windows: list[tuple[np.ndarray, np.ndarray, float]] = []
    min_width = max(step, 0.01)
    for g in _clusters(seed_pos, reach_lo, reach_hi):
        sel = (x_all >= reach_lo[g].min()) & (x_all <= reach_hi[g].max())
        if int(sel.sum()) < 3 * g.size + 4:
            continue
        start = _Lines(seed_pos[g], seed_h[g], seed_w[g])
        bounds = (np.full(g.size, min_width), 4.0 * seed_w[g])
        out = _fit_window(
            x_all[sel], y_all[sel], sigma[sel], start, MAX_MOVE_FWHM * seed_w[g], bounds, doublet
        )
        if out is None:
            continue
        lines, free = out.lines, out.free
        if abs(out.skew) >= 0.99 * MAX_SKEW:  # the skew bound holds a blend together: no line shape
            free = np.zeros_like(free)
        pos[g[free]], height[g[free]], fwhm[g[free]] = lines.pos[free], lines.height[free], lines.fwhm[free]
        fit_pos[g[free]] = lines.pos[free]
        fitted[g[free]] = True
        windows.append((g, sel, out.chi2))
    extra = _split_pairs(pattern, seed_pos, fit_pos, pos, height, fwhm, fitted, windows, doublet, sigma)
    pos = np.concatenate([pos, extra.pos])
    height = np.concatenate([height, extra.height])
    fwhm = np.concatenate([fwhm, extra.fwhm])
    keep = np.argsort(pos)
    pos = pos[keep]
    return PeakList(pos, d_spacings(pattern, pos), height[keep], fwhm[keep])


def _split_pairs(
    pattern: Pattern,
    seed_pos: np.ndarray,
    fit_pos: np.ndarray,
    pos: np.ndarray,
    height: np.ndarray,
    fwhm: np.ndarray,
    fitted: np.ndarray,
    windows: list[tuple[np.ndarray, np.ndarray, float]],
    doublet: _Doublet | None,
    sigma: np.ndarray,
) -> _Lines:
    """Split over-broad fitted lines into pairs: ``pos``, ``height`` and ``fwhm`` are updated in place (the
    first line of a pair, or the picked maximum ``seed_pos`` of a broad line that does not split); returns
    the second lines of the pairs. ``fit_pos``: the fitted positions."""
    none = _Lines(np.empty(0), np.empty(0), np.empty(0))
    trend = _width_trend(fit_pos[fitted], fwhm[fitted], height[fitted])
    if trend is None:
        return none
    expected = np.interp(fit_pos, fit_pos[fitted], trend)
    # the χ² test assumes the line shape fits a single line to the noise: where it does not (asymmetric lines
    # of a lab instrument), the threshold grows with the median reduced χ² of the one-line windows
    single = [chi2 / max(int(sel.sum()) - 7, 1) for g, sel, chi2 in windows if g.size == 1]
    misfit = max(1.0, float(np.median(single))) if single else 1.0
    extra: list[tuple[float, float, float]] = []
    for g, sel, chi2 in windows:
        broad = [j for j in range(g.size) if fitted[g[j]] and fwhm[g[j]] > SPLIT_WIDTH * expected[g[j]]]
        if not broad:
            continue
        # a line broader than the trend is a blend: its fitted centre lies between its lines, while the picked
        # maximum sits on the strongest (unless the pair below replaces it)
        pos[g[broad]] = seed_pos[g[broad]]
        j = max(broad, key=lambda k: height[g[k]])  # one split per window: the strongest broad line
        i = g[j]
        w = expected[g]
        half = 0.3 * fwhm[i]
        start = _Lines(
            np.concatenate([fit_pos[g], [fit_pos[i] + half]]),
            np.concatenate([height[g], [0.6 * height[i]]]),
            np.concatenate([w, [expected[i]]]),
        )
        start.pos[j] -= half
        start.height[j] *= 0.6
        # the pair's widths stay near the trend (start.fwhm), and each line moves by at most a fraction of it
        out = _fit_window(
            pattern.two_theta[sel],
            pattern.intensity[sel],
            sigma[sel],
            start,
            MAX_MOVE_FWHM * start.fwhm,
            (0.7 * start.fwhm, 1.3 * start.fwhm),
            doublet,
        )
        if out is None:
            continue
        lines, free, chi2_pair = out.lines, out.free, out.chi2
        a, b = lines.height[j], lines.height[-1]
        apart = abs(lines.pos[-1] - lines.pos[j]) >= SPLIT_MIN_SEPARATION * expected[i]
        if (
            chi2 - chi2_pair < SPLIT_CHI2 * misfit
            or not (free[j] and free[-1] and apart)
            or min(a, b) < 0.1 * max(a, b)
        ):
            continue
        pos[i], height[i], fwhm[i] = lines.pos[j], a, lines.fwhm[j]
        extra.append((float(lines.pos[-1]), float(b), float(lines.fwhm[-1])))
    if not extra:
        return none
    arr = np.asarray(extra)
    return _Lines(arr[:, 0], arr[:, 1], arr[:, 2])


def indexing_lines(pattern: Pattern, found: PeakList, *, fit: bool = True) -> PeakList:
    """The lines to index from picked peaks ``found``: Kα2 partners dropped
    (:meth:`~xrdsolve.conditioning.peaks.PeakList.without_kalpha2`), positions profile-fitted
    (:func:`fit_peak_positions`) unless ``fit`` is False."""
    lines = found.without_kalpha2(pattern.radiation)
    return fit_peak_positions(pattern, lines) if fit else lines


__all__ = ["fit_peak_positions", "indexing_lines"]
