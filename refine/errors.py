"""Exceptions raised by xrdsolve.refine."""

from __future__ import annotations


class RefineError(Exception):
    """Base class of every error raised by xrdsolve.refine."""


class RadiationError(RefineError, ValueError):
    """An unknown radiation preset or an invalid wavelength/weight specification."""


class StructureError(RefineError, ValueError):
    """A structure that cannot be simulated or refined (no atoms, unknown element, bad occupancy)."""
