"""Instrument parameters of a constant-wavelength powder diffractometer (GSAS/GSAS-II conventions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .radiation import Probe, Radiation


@dataclass(frozen=True, eq=False)
class InstrumentParameters:
    """Constant-wavelength instrument parameters, as in a GSAS-II ``.instprm`` file.

    Attributes
    ----------
    radiation : wavelengths (Å) with weights; for a Kα doublet the Kα2/Kα1 ratio is the second weight.
    type : GSAS-II histogram type, ``"PXC"`` (X-ray) or ``"PNC"`` (neutron).
    polarization : polarisation fraction (GSAS-II ``Polariz.``; 0.5 unpolarised tube, ~0.99 synchrotron).
    zero : 2θ zero offset, degrees.
    U, V, W : Caglioti Gaussian terms, centidegrees² (σ² = U tan²θ + V tanθ + W).
    X, Y : Lorentzian terms, centidegrees (γ = X/cosθ + Y tanθ).
    Z : constant Lorentzian term, centidegrees.
    SH_L : axial-divergence asymmetry S/L + H/L (dimensionless).
    azimuth : detector azimuth, degrees.
    raw : every key/value read from the file, unconverted.
    """

    radiation: Radiation
    type: str = "PXC"
    polarization: float = 0.5
    zero: float = 0.0
    U: float = 0.0
    V: float = 0.0
    W: float = 0.0
    X: float = 0.0
    Y: float = 0.0
    Z: float = 0.0
    SH_L: float = 0.002
    azimuth: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def probe(self) -> Probe:
        """X-ray or neutron, from the radiation."""
        return self.radiation.probe

    @property
    def kalpha2_ratio(self) -> float | None:
        """I(Kα2)/I(Kα1) for a two-line tube spectrum, else None."""
        if len(self.radiation.wavelengths) != 2:
            return None
        return self.radiation.weights[1] / self.radiation.weights[0]
