"""The measured (or simulated) powder pattern that flows through the pipeline."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from xrdsolve.refine.radiation import Geometry, Radiation, q_to_two_theta, two_theta_to_q

from .errors import MissingWavelengthError, PatternDataError

#: Smallest σ assigned from counting statistics: a zero-count point gets σ = 1 count.
COUNT_SIGMA_FLOOR = 1.0


class SigmaSource(enum.StrEnum):
    """Where the σ of a pattern came from."""

    FILE = "file"  #: given in the file (third column, ESD bank, ...)
    COUNTING = "counting"  #: √counts with a floor (intensities are raw counts)
    UNKNOWN = "unknown"  #: intensities are not counts; σ is a crude placeholder, do not trust GoF


@dataclass(frozen=True, eq=False)
class Pattern:
    """A 1-D powder pattern.

    Attributes
    ----------
    two_theta : float64 array, degrees 2θ, strictly increasing.
    intensity : float64 array, arbitrary units (counts where known).
    sigma : float64 array, standard uncertainty of ``intensity`` (> 0 everywhere).
    sigma_source : where ``sigma`` came from (file, counting statistics, or unknown).
    radiation : incident radiation (wavelengths in Å), or None when the file does not say.
    geometry : diffractometer geometry.
    meta : free-form metadata: ``source`` (file path), ``format``, ``sample``, ``instrument``, …
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    sigma_source: SigmaSource = SigmaSource.UNKNOWN
    radiation: Radiation | None = None
    geometry: Geometry = Geometry.UNKNOWN
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tt = np.ascontiguousarray(self.two_theta, dtype=np.float64)
        y = np.ascontiguousarray(self.intensity, dtype=np.float64)
        s = np.ascontiguousarray(self.sigma, dtype=np.float64)
        if tt.ndim != 1 or y.ndim != 1 or s.ndim != 1:
            raise PatternDataError("two_theta, intensity and sigma must be 1-D arrays")
        if not (len(tt) == len(y) == len(s)):
            raise PatternDataError(
                f"array lengths differ: two_theta {len(tt)}, intensity {len(y)}, sigma {len(s)}"
            )
        if len(tt) < 2:
            raise PatternDataError(f"a pattern needs at least 2 points, got {len(tt)}")
        for name, arr in (("two_theta", tt), ("intensity", y), ("sigma", s)):
            bad = ~np.isfinite(arr)
            if bad.any():
                raise PatternDataError(f"{name} has a non-finite value at point {int(np.argmax(bad))}")
        steps = np.diff(tt)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0))
            raise PatternDataError(
                f"2θ must increase strictly: point {i + 1} ({tt[i + 1]:.6g}°) follows {tt[i]:.6g}°"
            )
        if (s <= 0).any():
            raise PatternDataError(
                f"sigma must be > 0, got {s[int(np.argmax(s <= 0))]} at point {int(np.argmax(s <= 0))}"
            )
        for arr in (tt, y, s):
            arr.setflags(write=False)
        object.__setattr__(self, "two_theta", tt)
        object.__setattr__(self, "intensity", y)
        object.__setattr__(self, "sigma", s)
        object.__setattr__(self, "sigma_source", SigmaSource(self.sigma_source))
        object.__setattr__(self, "geometry", Geometry.parse(self.geometry))

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        two_theta: Any,
        intensity: Any,
        sigma: Any | None = None,
        *,
        radiation: Radiation | str | float | None = None,
        geometry: Geometry | str = Geometry.UNKNOWN,
        counts: bool | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Pattern:
        """Build a pattern; without ``sigma``, use √counts (floor 1) when the intensities look like
        counts (non-negative; ``counts=None`` decides from the data), else flag σ as unknown."""
        y = np.asarray(intensity, dtype=np.float64)
        if sigma is not None:
            return cls(
                np.asarray(two_theta, dtype=np.float64),
                y,
                np.asarray(sigma, dtype=np.float64),
                SigmaSource.FILE,
                None if radiation is None else Radiation.parse(radiation),
                Geometry.parse(geometry),
                dict(meta or {}),
            )
        sig, src = estimate_sigma(y, counts=counts)
        return cls(
            np.asarray(two_theta, dtype=np.float64),
            y,
            sig,
            src,
            None if radiation is None else Radiation.parse(radiation),
            Geometry.parse(geometry),
            dict(meta or {}),
        )

    @classmethod
    def from_q(
        cls,
        q: Any,
        intensity: Any,
        sigma: Any | None = None,
        *,
        radiation: Radiation | str | float,
        **kwargs: Any,
    ) -> Pattern:
        """Build a pattern from data on a Q axis (Å⁻¹), converted to 2θ with the radiation's
        primary wavelength."""
        rad = Radiation.parse(radiation)
        tt = q_to_two_theta(np.asarray(q, dtype=np.float64), rad.primary_wavelength)
        if np.isnan(tt).any():
            raise PatternDataError(
                f"Q up to {np.nanmax(np.asarray(q)):.4g} Å⁻¹ is unreachable with λ = {rad.primary_wavelength} Å"
            )
        return cls.from_arrays(tt, intensity, sigma, radiation=rad, **kwargs)

    # -- derived axes ---------------------------------------------------------------------------
    def _wavelength(self) -> float:
        if self.radiation is None:
            src = self.meta.get("source", "this pattern")
            raise MissingWavelengthError(
                f"{src}: no wavelength known; give one (e.g. --radiation CuKa or --wavelength 0.4137)"
            )
        return self.radiation.primary_wavelength

    def q(self) -> np.ndarray:
        """Q = 4π sin θ / λ (Å⁻¹) of every point, using the primary wavelength."""
        return two_theta_to_q(self.two_theta, self._wavelength())

    def d(self) -> np.ndarray:
        """d = λ / (2 sin θ) (Å) of every point, using the primary wavelength."""
        return 2.0 * np.pi / self.q()

    # -- conveniences ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.two_theta.size)

    @property
    def step(self) -> float:
        """Median 2θ step, degrees."""
        return float(np.median(np.diff(self.two_theta)))

    @property
    def range(self) -> tuple[float, float]:
        """First and last 2θ, degrees."""
        return float(self.two_theta[0]), float(self.two_theta[-1])

    def with_radiation(self, radiation: Radiation | str | float) -> Pattern:
        """A copy with the radiation set (or replaced)."""
        return replace(self, radiation=Radiation.parse(radiation))

    def cropped(self, two_theta_min: float, two_theta_max: float) -> Pattern:
        """A copy restricted to ``two_theta_min ≤ 2θ ≤ two_theta_max`` (degrees)."""
        keep = (self.two_theta >= two_theta_min) & (self.two_theta <= two_theta_max)
        if keep.sum() < 2:
            raise PatternDataError(f"fewer than 2 points between {two_theta_min}° and {two_theta_max}°")
        return replace(
            self,
            two_theta=self.two_theta[keep],
            intensity=self.intensity[keep],
            sigma=self.sigma[keep],
            meta=dict(self.meta),
        )

    def __repr__(self) -> str:
        lo, hi = self.range
        rad = self.radiation.describe() if self.radiation else "radiation unknown"
        src = self.meta.get("source", "")
        return f"Pattern({len(self)} points, 2θ {lo:.3f}–{hi:.3f}°, {rad}{', ' + str(src) if src else ''})"


def estimate_sigma(intensity: np.ndarray, *, counts: bool | None = None) -> tuple[np.ndarray, SigmaSource]:
    """σ for intensities without uncertainties.

    Counts (non-negative and, when ``counts`` is None, integer-valued or large enough to be counts):
    σ = √max(I, 1). Otherwise σ is flagged unknown and set to √|I| scaled to the data with a floor of
    1 % of the maximum, so weights stay finite but GoF is not meaningful.
    """
    y = np.asarray(intensity, dtype=np.float64)
    if counts is None:
        finite = y[np.isfinite(y)]
        counts = (
            bool(finite.size)
            and bool((finite >= 0).all())
            and bool(np.allclose(finite, np.round(finite), atol=1e-6) or finite.max() > 50)
        )
    if counts:
        return np.sqrt(np.maximum(y, COUNT_SIGMA_FLOOR)), SigmaSource.COUNTING
    scale = float(np.nanmax(np.abs(y))) if y.size and np.isfinite(y).any() else 1.0
    scale = scale if scale > 0 else 1.0
    sig = np.sqrt(np.maximum(np.abs(y), 0.01 * scale) * scale / 1000.0)
    return np.where(np.isfinite(sig) & (sig > 0), sig, 1.0), SigmaSource.UNKNOWN
