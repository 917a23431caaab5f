"""Incident radiation (wavelengths in Å with relative weights) and diffraction geometry."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import RadiationError


class Probe(enum.StrEnum):
    """What scatters: X-rays (electron density, form factors) or neutrons (nuclear scattering lengths)."""

    XRAY = "xray"
    NEUTRON = "neutron"


class Geometry(enum.StrEnum):
    """Diffractometer geometry, which sets the Lorentz–polarisation correction."""

    BRAGG_BRENTANO = "bragg-brentano"
    DEBYE_SCHERRER = "debye-scherrer"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str | Geometry) -> Geometry:
        if isinstance(text, Geometry):
            return text
        key = text.strip().lower().replace("_", "-").replace(" ", "-")
        aliases = {
            "bb": cls.BRAGG_BRENTANO,
            "reflection": cls.BRAGG_BRENTANO,
            "bragg-brentano": cls.BRAGG_BRENTANO,
            "ds": cls.DEBYE_SCHERRER,
            "transmission": cls.DEBYE_SCHERRER,
            "capillary": cls.DEBYE_SCHERRER,
            "synchrotron": cls.DEBYE_SCHERRER,
            "debye-scherrer": cls.DEBYE_SCHERRER,
            "unknown": cls.UNKNOWN,
        }
        if key not in aliases:
            raise RadiationError(f"unknown geometry {text!r}; expected one of bragg-brentano, debye-scherrer")
        return aliases[key]


# Emission lines (Å) from Hölzer et al., Phys. Rev. A 56, 4554 (1997), as tabulated in
# International Tables C, Table 4.2.2.1; Kα2/Kα1 weight 0.5 (the usual 2:1 doublet).
_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "CuKa": ((1.540593, 1.544427), (1.0, 0.5)),
    "CuKa1": ((1.540593,), (1.0,)),
    "MoKa": ((0.709317, 0.713607), (1.0, 0.5)),
    "MoKa1": ((0.709317,), (1.0,)),
    "CoKa": ((1.788965, 1.792850), (1.0, 0.5)),
    "CoKa1": ((1.788965,), (1.0,)),
    "CrKa": ((2.289760, 2.293663), (1.0, 0.5)),
    "CrKa1": ((2.289760,), (1.0,)),
    "FeKa": ((1.936042, 1.939980), (1.0, 0.5)),
    "FeKa1": ((1.936042,), (1.0,)),
    "AgKa": ((0.559421, 0.563813), (1.0, 0.5)),
    "AgKa1": ((0.559421,), (1.0,)),
}


@dataclass(frozen=True)
class Radiation:
    """Incident radiation: one or more wavelengths (Å) with relative intensity weights.

    ``Radiation.preset("CuKa")`` gives the Cu Kα1/Kα2 doublet at 2:1,
    ``Radiation.monochromatic(0.4137)`` one synchrotron wavelength,
    ``Radiation.monochromatic(1.594, probe="neutron")`` a constant-wavelength neutron beam.
    """

    wavelengths: tuple[float, ...]
    weights: tuple[float, ...] = field(default=(1.0,))
    probe: Probe = Probe.XRAY
    name: str | None = None

    def __post_init__(self) -> None:
        wl = tuple(float(w) for w in self.wavelengths)
        wt = tuple(float(w) for w in self.weights)
        if len(wl) == 0:
            raise RadiationError("radiation needs at least one wavelength")
        if len(wt) != len(wl):
            raise RadiationError(f"{len(wl)} wavelengths but {len(wt)} weights")
        if not all(math.isfinite(w) and 0.01 < w < 100.0 for w in wl):
            raise RadiationError(f"wavelengths must be finite and between 0.01 and 100 Å, got {wl}")
        if not all(math.isfinite(w) and w >= 0 for w in wt) or sum(wt) <= 0:
            raise RadiationError(f"weights must be finite, non-negative and not all zero, got {wt}")
        object.__setattr__(self, "wavelengths", wl)
        object.__setattr__(self, "weights", wt)
        object.__setattr__(self, "probe", Probe(self.probe))

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> Radiation:
        """A named X-ray tube line: CuKa, CuKa1, MoKa, CoKa, CrKa, FeKa, AgKa (and their …Ka1)."""
        key = _canonical_preset(name)
        if key is None:
            raise RadiationError(
                f"unknown radiation {name!r}; expected one of {', '.join(sorted(_PRESETS))} "
                "or a wavelength in Å"
            )
        wl, wt = _PRESETS[key]
        return cls(wl, wt, Probe.XRAY, key)

    @classmethod
    def monochromatic(cls, wavelength: float, probe: Probe | str = Probe.XRAY) -> Radiation:
        """A single wavelength in Å (synchrotron, monochromated lab source, CW neutrons)."""
        return cls((float(wavelength),), (1.0,), Probe(probe), None)

    @classmethod
    def parse(cls, text: str | float | Radiation) -> Radiation:
        """Parse a user string: a preset name ('CuKa'), a wavelength in Å ('0.4137'),
        'neutron:1.594', or a weighted list ('1.5406:1,1.5444:0.5')."""
        if isinstance(text, Radiation):
            return text
        if isinstance(text, (int, float)):
            return cls.monochromatic(float(text))
        s = str(text).strip()
        probe = Probe.XRAY
        m = re.fullmatch(r"(?i)(neutron|xray|x-ray)\s*[:=]\s*(.+)", s)
        if m:
            probe = Probe.NEUTRON if m.group(1).lower() == "neutron" else Probe.XRAY
            s = m.group(2).strip()
        if _canonical_preset(s) is not None:
            if probe is Probe.NEUTRON:
                raise RadiationError(f"{s!r} is an X-ray tube line, not a neutron wavelength")
            return cls.preset(s)
        parts = [p for p in re.split(r"[,;\s]+", s) if p]
        wls: list[float] = []
        wts: list[float] = []
        try:
            for part in parts:
                if ":" in part:
                    a, b = part.split(":", 1)
                    wls.append(float(a))
                    wts.append(float(b))
                else:
                    wls.append(float(part))
                    wts.append(1.0)
        except ValueError:
            raise RadiationError(
                f"cannot read radiation {text!r}; expected a preset ({', '.join(sorted(_PRESETS))}), "
                "a wavelength in Å such as 0.4137, or 'neutron:1.594'"
            ) from None
        return cls(tuple(wls), tuple(wts), probe, None)

    # -- properties -------------------------------------------------------------------------
    @property
    def primary_wavelength(self) -> float:
        """The wavelength with the largest weight (Kα1 for a tube doublet), Å."""
        return self.wavelengths[int(np.argmax(self.weights))]

    @property
    def mean_wavelength(self) -> float:
        """Weight-averaged wavelength, Å."""
        w = np.asarray(self.weights)
        return float(np.dot(self.wavelengths, w) / w.sum())

    @property
    def normalized_weights(self) -> tuple[float, ...]:
        s = sum(self.weights)
        return tuple(w / s for w in self.weights)

    @property
    def is_monochromatic(self) -> bool:
        return len(self.wavelengths) == 1

    def describe(self) -> str:
        """Short human-readable description, e.g. 'CuKa (1.540593/1.544427 Å, 1:0.5)'."""
        wl = "/".join(f"{w:.6g}" for w in self.wavelengths)
        label = self.name or ("neutron" if self.probe is Probe.NEUTRON else "X-ray")
        if self.is_monochromatic:
            return f"{label} ({wl} Å)"
        wt = ":".join(f"{w:.3g}" for w in self.weights)
        return f"{label} ({wl} Å, {wt})"

    def to_dict(self) -> dict[str, object]:
        return {
            "wavelengths": list(self.wavelengths),
            "weights": list(self.weights),
            "probe": self.probe.value,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Radiation:
        return cls(
            tuple(d["wavelengths"]),  # type: ignore[arg-type]
            tuple(d.get("weights", (1.0,))),  # type: ignore[arg-type]
            Probe(str(d.get("probe", "xray"))),
            d.get("name"),  # type: ignore[arg-type]
        )


def _canonical_preset(name: str) -> str | None:
    key = name.strip().replace(" ", "").replace("-", "").replace("_", "").lower()
    key = key.replace("alpha", "a").replace("kα", "ka")
    for preset in _PRESETS:
        if preset.lower() == key:
            return preset
    return None


def preset_names() -> Sequence[str]:
    """Names accepted by :meth:`Radiation.preset`."""
    return tuple(_PRESETS)


def two_theta_to_q(two_theta_deg: np.ndarray, wavelength: float) -> np.ndarray:
    """Q = 4π sin(θ)/λ in Å⁻¹ from 2θ in degrees and λ in Å."""
    return 4.0 * np.pi * np.sin(np.deg2rad(np.asarray(two_theta_deg, dtype=float)) / 2.0) / wavelength


def q_to_two_theta(q: np.ndarray, wavelength: float) -> np.ndarray:
    """2θ in degrees from Q in Å⁻¹ and λ in Å; NaN where Q is beyond 4π/λ."""
    s = np.asarray(q, dtype=float) * wavelength / (4.0 * np.pi)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(s) <= 1.0, 2.0 * np.rad2deg(np.arcsin(np.clip(s, -1, 1))), np.nan)
