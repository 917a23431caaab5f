"""Put any pattern on the encoder's fixed Q grid: bin-average, subtract a smooth background, normalise.

The same function serves measured patterns and simulated training patterns, so the encoder sees both
through one path. Output: a (2, M) float32 array — channel 0 the normalised intensity (√ of the
background-subtracted intensity over its maximum, 0 outside coverage), channel 1 the coverage mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from .errors import PatternDataError
from .pattern import Pattern


@dataclass(frozen=True)
class QGrid:
    """Uniform grid in Q (Å⁻¹): ``n`` points from ``q_min`` to ``q_max``."""

    q_min: float = 0.3
    q_max: float = 6.0
    n: int = 2048

    @property
    def q(self) -> np.ndarray:
        return np.linspace(self.q_min, self.q_max, self.n)

    @property
    def edges(self) -> np.ndarray:
        step = (self.q_max - self.q_min) / (self.n - 1)
        return np.linspace(self.q_min - step / 2, self.q_max + step / 2, self.n + 1)


DEFAULT_GRID = QGrid()


def resample(
    q: np.ndarray, intensity: np.ndarray, grid: QGrid = DEFAULT_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Bin-average ``intensity`` given at ``q`` (Å⁻¹, increasing) onto ``grid``; returns (values, coverage).

    Bins without data points inside the covered range are filled by linear interpolation, so a coarse
    measurement still fills the grid; bins outside [q.min(), q.max()] are 0 with coverage 0.
    """
    q = np.asarray(q, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    edges = grid.edges
    idx = np.searchsorted(edges, q) - 1
    ok = (idx >= 0) & (idx < grid.n)
    sums = np.bincount(idx[ok], weights=y[ok], minlength=grid.n)
    counts = np.bincount(idx[ok], minlength=grid.n)
    gq = grid.q
    covered = (gq >= q.min()) & (gq <= q.max())
    out = np.zeros(grid.n)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    fill = covered & ~has
    if fill.any():
        out[fill] = np.interp(gq[fill], q, y)
    out[~covered] = 0.0
    return out, covered.astype(np.float64)


def subtract_background(y: np.ndarray, coverage: np.ndarray, window: int = 151) -> np.ndarray:
    """Remove a smooth lower envelope (rolling minimum, then smoothed) from ``y`` inside the coverage."""
    cov = coverage > 0
    if not cov.any():
        return y
    yy = np.where(cov, y, np.max(y[cov]))
    env = minimum_filter1d(yy, size=window, mode="nearest")
    env = uniform_filter1d(env, size=window, mode="nearest")
    env = np.minimum(env, yy)
    return np.where(cov, y - env, 0.0)


def normalise(y: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """√(max(y, 0) / max y) inside the coverage (compresses 2–3 decades of peak heights)."""
    y = np.clip(y, 0.0, None) * (coverage > 0)
    top = y.max()
    if top <= 0:
        return y
    return np.sqrt(y / top)


def encode_arrays(q: np.ndarray, intensity: np.ndarray, grid: QGrid = DEFAULT_GRID) -> np.ndarray:
    """(2, M) float32 encoder input from raw arrays (Q in Å⁻¹)."""
    y, cov = resample(q, intensity, grid)
    y = normalise(subtract_background(y, cov), cov)
    return np.stack([y, cov]).astype(np.float32)


def preprocess(pattern: Pattern, grid: QGrid = DEFAULT_GRID) -> np.ndarray:
    """(2, M) float32 encoder input of a Pattern (needs its wavelength)."""
    q = pattern.q()
    inside = (q >= grid.q_min) & (q <= grid.q_max)
    if inside.sum() < 10:
        raise PatternDataError(
            f"pattern covers Q {q.min():.3g}–{q.max():.3g} Å⁻¹, outside the encoder grid "
            f"{grid.q_min}–{grid.q_max} Å⁻¹"
        )
    return encode_arrays(q, pattern.intensity, grid)
