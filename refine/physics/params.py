"""Instrument settings (non-differentiable) and profile parameters (batched tensors, GSAS-II units)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from ..errors import RefineError
from ..radiation import Geometry, Probe, Radiation
from .profile import FCJ_QUADRATURES

#: GSAS-II's default lab instrument (CuKa, Bragg–Brentano): U, V, W in centideg², X, Y in centideg, SH/L.
DEFAULT_PROFILE: dict[str, float] = {
    "scale": 1.0,
    "zero": 0.0,
    "displacement": 0.0,
    "U": 2.0,
    "V": -2.0,
    "W": 5.0,
    "X": 0.0,
    "Y": 0.0,
    "asym": 0.0,
    "po_ratio": 1.0,
}


#: Default goniometer radius (mm) of the sample-displacement shift (GSAS-II's own default is 200 mm).
GONIOMETER_RADIUS_MM = 240.0


@dataclass(frozen=True)
class Instrument:
    """Non-differentiable instrument settings.

    radiation: wavelengths (Å) and weights; geometry: Bragg–Brentano or Debye–Scherrer; polarisation: GSAS-II
    "Polariz." fraction K in P(2θ) = K + (1−K)·cos²2θ·cos²2θ_m (0.5 = unpolarised lab tube, ~0.99 for a
    synchrotron); monochromator_two_theta: 2θ_m in degrees of a monochromator (None: none);
    goniometer_radius in mm (for sample displacement); po_axis: March–Dollase axis as a reciprocal-lattice
    direction hkl; window_fwhm: each peak is evaluated over a total width of window_fwhm × FWHM;
    anomalous: add f′ + i f″ (Chantler) at each wavelength; form_factors: "wk95" (xraydb
    Waasmaier–Kirfel; neutrons: periodictable b_c; default) or "pymatgen" (the tables of pymatgen's
    XRDCalculator / NDCalculator, for exact comparison); fcj_quadrature: "converged" (the axial-divergence
    integral to ~1e-4 of the peak maximum; default) or "gsas2" (GSAS-II's own node rule, for like-for-like
    comparisons with GSAS-II; :func:`~.profile.fcj_subpeaks_gsas2`).
    """

    radiation: Radiation
    geometry: Geometry = Geometry.BRAGG_BRENTANO
    polarisation: float = 0.5
    monochromator_two_theta: float | None = None
    goniometer_radius: float = GONIOMETER_RADIUS_MM
    po_axis: tuple[int, int, int] = (0, 0, 1)
    window_fwhm: float = 20.0
    anomalous: bool = False
    form_factors: str = "wk95"
    fcj_quadrature: str = "converged"

    def __post_init__(self) -> None:
        object.__setattr__(self, "radiation", Radiation.parse(self.radiation))
        object.__setattr__(self, "geometry", Geometry.parse(self.geometry))
        if not 0.0 <= self.polarisation <= 1.0:
            raise RefineError(f"polarisation fraction must be in [0, 1], got {self.polarisation}")
        if self.window_fwhm <= 0:
            raise RefineError("window_fwhm must be positive")
        if self.fcj_quadrature not in FCJ_QUADRATURES:
            raise RefineError(f"fcj_quadrature must be one of {FCJ_QUADRATURES}, got {self.fcj_quadrature!r}")
        if self.goniometer_radius <= 0:
            raise RefineError("goniometer_radius must be positive (mm)")
        if tuple(self.po_axis) == (0, 0, 0):
            raise RefineError("po_axis must not be (0, 0, 0)")
        if self.form_factors not in ("wk95", "pymatgen"):
            raise RefineError(f"form_factors must be 'wk95' or 'pymatgen', got {self.form_factors!r}")

    @property
    def is_neutron(self) -> bool:
        return self.radiation.probe is Probe.NEUTRON

    @classmethod
    def lab(cls, radiation: str | Radiation = "CuKa", **kw: Any) -> Instrument:
        """A lab Bragg–Brentano instrument (unpolarised tube, no monochromator, anomalous f′ f″ on as in
        GSAS-II)."""
        kw.setdefault("anomalous", True)
        return cls(radiation=Radiation.parse(radiation), **kw)

    @classmethod
    def synchrotron(cls, wavelength: float, **kw: Any) -> Instrument:
        """A Debye–Scherrer synchrotron instrument with polarisation fraction 0.99 (anomalous f′ f″ on)."""
        kw.setdefault("polarisation", 0.99)
        kw.setdefault("anomalous", True)
        return cls(radiation=Radiation.monochromatic(wavelength), geometry=Geometry.DEBYE_SCHERRER, **kw)


@dataclass
class ProfileParams:
    """Profile and scale parameters, each a (B,) tensor (background (B,K)); GSAS-II units.

    scale: multiplies the Bragg intensity; zero: degrees 2θ (2θ_obs = 2θ_calc + zero); displacement: sample
    displacement in μm (GSAS-II "Shift"); U, V, W: Gaussian variance σ² = U tan²θ + V tanθ + W in centideg²;
    X, Y: Lorentzian FWHM γ = X/cosθ + Y tanθ in centideg; asym: axial divergence SH/L = S/L + H/L with
    S = H (Finger–Cox–Jephcoat; GSAS-II's SH/L; 0 = symmetric); background: (B,K) Chebyshev coefficients over
    the grid's 2θ range mapped to [-1, 1]; po_ratio: March–Dollase r (1 = none); inv_two_theta: optional (B,) coefficient of a
    background term c/2θ (2θ in degrees).
    """

    scale: Tensor
    zero: Tensor
    displacement: Tensor
    U: Tensor
    V: Tensor
    W: Tensor
    X: Tensor
    Y: Tensor
    asym: Tensor
    background: Tensor
    po_ratio: Tensor
    inv_two_theta: Tensor | None = field(default=None)

    @classmethod
    def default(
        cls,
        batch_size: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        n_background: int = 0,
        **overrides: Any,
    ) -> ProfileParams:
        """GSAS-II-like lab defaults (U=2, V=−2, W=5 centideg², X=Y=0, no asymmetry, no background).

        Overrides may be numbers (broadcast to (B,)) or tensors; ``background`` may be (K,) or (B,K).
        """
        dev = torch.device(device) if device is not None else None
        values: dict[str, Any] = {}
        for name, v in DEFAULT_PROFILE.items():
            val = overrides.pop(name, v)
            t = torch.as_tensor(val, dtype=dtype, device=dev)
            values[name] = t.expand(batch_size).clone() if t.ndim == 0 else t
        bg = overrides.pop("background", None)
        if bg is None:
            values["background"] = torch.zeros(batch_size, n_background, dtype=dtype, device=dev)
        else:
            t = torch.as_tensor(bg, dtype=dtype, device=dev)
            values["background"] = t.expand(batch_size, -1).clone() if t.ndim == 1 else t
        inv = overrides.pop("inv_two_theta", None)
        values["inv_two_theta"] = (
            None if inv is None else torch.as_tensor(inv, dtype=dtype, device=dev).expand(batch_size).clone()
        )
        if overrides:
            raise RefineError(f"unknown profile parameters: {', '.join(sorted(overrides))}")
        return cls(**values)

    def tensors(self) -> dict[str, Tensor]:
        """The non-None fields by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> ProfileParams:
        """A copy with every tensor converted to ``dtype`` / moved to ``device`` (no copy when unchanged)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            t = getattr(self, f.name)
            out[f.name] = None if t is None else t.to(dtype=dtype, device=device)
        return ProfileParams(**out)

    def select(self, index: Tensor | slice) -> ProfileParams:
        """Rows ``index`` of every (B,…) field."""
        out: dict[str, Any] = {}
        for f in fields(self):
            t = getattr(self, f.name)
            out[f.name] = None if t is None else (t[index] if t.ndim >= 1 else t)
        return ProfileParams(**out)
