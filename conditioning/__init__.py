"""xrdsolve.conditioning — from a measured file to what the generator is conditioned on.

Readers and writers, the :class:`Pattern` and :class:`Radiation` data classes, preprocessing,
the pattern encoder and training-time augmentation. Units: degrees 2θ, Å, Å⁻¹.
"""

from xrdsolve.refine.radiation import Geometry, Probe, Radiation

from .errors import (
    ConditioningError,
    MissingWavelengthError,
    PatternDataError,
    PatternFormatError,
    UnknownFormatError,
)
from .io import read_instrument, read_pattern, write_pattern
from .pattern import Pattern, SigmaSource

__all__ = [
    "ConditioningError",
    "Geometry",
    "MissingWavelengthError",
    "Pattern",
    "PatternDataError",
    "PatternFormatError",
    "Probe",
    "Radiation",
    "SigmaSource",
    "UnknownFormatError",
    "read_instrument",
    "read_pattern",
    "write_pattern",
]
