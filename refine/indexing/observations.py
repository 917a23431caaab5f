"""Observed peak positions handed to the indexing search."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import RefineError
from .systems import FloatArray

#: Wavelength (Å, Cu Kα1) used to express d-spacing input as 2θ for tolerances and F_N.
NOTIONAL_WAVELENGTH = 1.540593


class IndexingError(RefineError, ValueError):
    """Peak lists or options that the indexing search cannot work with."""


@dataclass(frozen=True)
class Peaks:
    """Peak positions sorted by increasing 2θ: 2θ (degrees) at ``wavelength`` (Å).

    ``from_d`` stores d-spacing input at :data:`NOTIONAL_WAVELENGTH` with ``zero_allowed=False`` (a zero
    shift is meaningless without a measured angle). ``sigma`` are position uncertainties (degrees 2θ).
    """

    two_theta: FloatArray
    wavelength: float
    intensity: FloatArray | None = None
    sigma: FloatArray | None = None
    zero_allowed: bool = True

    @classmethod
    def from_two_theta(
        cls,
        two_theta: FloatArray | list[float],
        wavelength: float,
        intensity: FloatArray | list[float] | None = None,
        sigma: FloatArray | list[float] | None = None,
    ) -> Peaks:
        """Peaks at ``two_theta`` (degrees) for one ``wavelength`` (Å)."""
        tt = np.asarray(two_theta, dtype=np.float64).ravel()
        if not math.isfinite(wavelength) or wavelength <= 0:
            raise IndexingError(f"wavelength must be a positive number of Å, got {wavelength!r}")
        if tt.size == 0:
            raise IndexingError("no peaks to index")
        if np.any(~np.isfinite(tt)) or np.any(tt <= 0) or np.any(tt >= 180):
            raise IndexingError("peak positions must be finite 2θ values between 0 and 180 degrees")
        order = np.argsort(tt)
        inten = None if intensity is None else np.asarray(intensity, dtype=np.float64).ravel()[order]
        sig = None if sigma is None else np.asarray(sigma, dtype=np.float64).ravel()[order]
        for name, arr in (("intensity", inten), ("sigma", sig)):
            if arr is not None and arr.shape != tt.shape:
                raise IndexingError(f"{name} has {arr.size} values for {tt.size} peaks")
        return cls(tt[order], float(wavelength), inten, sig)

    @classmethod
    def from_d(
        cls,
        d: FloatArray | list[float],
        intensity: FloatArray | list[float] | None = None,
    ) -> Peaks:
        """Peaks given as d-spacings (Å); no zero shift is refined for them."""
        dd = np.asarray(d, dtype=np.float64).ravel()
        if dd.size == 0:
            raise IndexingError("no peaks to index")
        if np.any(~np.isfinite(dd)) or np.any(dd <= NOTIONAL_WAVELENGTH / 2):
            raise IndexingError(f"d-spacings must be finite and larger than {NOTIONAL_WAVELENGTH / 2:.3f} Å")
        tt = 2.0 * np.degrees(np.arcsin(NOTIONAL_WAVELENGTH / (2.0 * dd)))
        p = cls.from_two_theta(tt, NOTIONAL_WAVELENGTH, intensity)
        return cls(p.two_theta, p.wavelength, p.intensity, None, zero_allowed=False)

    def __len__(self) -> int:
        return int(self.two_theta.size)

    @property
    def d(self) -> FloatArray:
        """d-spacings (Å)."""
        return d_from_two_theta(self.two_theta, self.wavelength)

    def first(self, n: int) -> Peaks:
        """The ``n`` lowest-angle peaks."""
        cut = slice(0, n)
        return Peaks(
            self.two_theta[cut],
            self.wavelength,
            None if self.intensity is None else self.intensity[cut],
            None if self.sigma is None else self.sigma[cut],
            self.zero_allowed,
        )


def inv_d2(two_theta: FloatArray, wavelength: float) -> FloatArray:
    """1/d² (Å⁻²) at 2θ (degrees)."""
    s = np.sin(np.radians(np.asarray(two_theta, dtype=np.float64)) / 2.0)
    return np.asarray(4.0 * s * s / wavelength**2, dtype=np.float64)


def d_inv_d2(two_theta: FloatArray, wavelength: float) -> FloatArray:
    """Derivative of 1/d² (Å⁻²) with respect to 2θ (per degree)."""
    tt = np.radians(np.asarray(two_theta, dtype=np.float64))
    return np.asarray(2.0 * np.sin(tt) / wavelength**2 * (math.pi / 180.0), dtype=np.float64)


def two_theta_from_inv_d2(q: FloatArray, wavelength: float) -> FloatArray:
    """2θ (degrees) of 1/d² values (Å⁻²); NaN beyond the 180° limit."""
    s = np.sqrt(np.maximum(np.asarray(q, dtype=np.float64), 0.0)) * wavelength / 2.0
    with np.errstate(invalid="ignore"):
        return np.asarray(2.0 * np.degrees(np.arcsin(np.where(s <= 1.0, s, np.nan))), dtype=np.float64)


def d_from_two_theta(two_theta: FloatArray, wavelength: float) -> FloatArray:
    """d-spacing (Å) from 2θ (degrees)."""
    return np.asarray(wavelength / (2.0 * np.sin(np.radians(two_theta) / 2.0)), dtype=np.float64)


def drop_kalpha2(
    two_theta: FloatArray,
    height: FloatArray,
    wavelength1: float,
    wavelength2: float,
    tolerance: float = 0.03,
    max_ratio: float = 0.8,
) -> np.ndarray:
    """Mask of peaks to keep: drops peaks that sit at the Kα2 position (within ``tolerance`` degrees 2θ)
    of a peak at least 1/``max_ratio`` times stronger. 2θ in degrees, wavelengths in Å."""
    tt = np.asarray(two_theta, dtype=np.float64)
    hh = np.asarray(height, dtype=np.float64)
    s = np.sin(np.radians(tt) / 2.0) * wavelength2 / wavelength1
    partner = np.where(s < 1.0, 2.0 * np.degrees(np.arcsin(np.minimum(s, 1.0))), np.inf)
    close = np.abs(tt[None, :] - partner[:, None]) <= tolerance  # (Kα1 candidate, Kα2 candidate)
    weaker = hh[None, :] <= max_ratio * hh[:, None]
    return ~np.any(close & weaker, axis=0)
