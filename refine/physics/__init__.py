"""Batched, differentiable powder-diffraction forward model.

Public API: :class:`CrystalBatch` (padded structures), :class:`ProfileParams` (GSAS-II-unit profile
parameters), :class:`Instrument`, :func:`generate_hkl`, :func:`simulate`, :func:`bragg_intensities`,
:func:`reflection_table`, :func:`species_index`. Units: Å, degrees 2θ, Å² for B_iso.
"""

from .background import chebyshev_background
from .batch import CrystalBatch
from .forward import ReflectionData, bragg_intensities, peak_shift, simulate
from .intensity import lorentz_polarisation, march_dollase
from .lattice import d_min_for, d_spacing, generate_hkl, reciprocal_lattice
from .many import simulate_structures
from .params import Instrument, ProfileParams
from .profile import pseudo_voigt, tch_widths
from .reflections import reflection_table, reflection_tables
from .scattering import form_factor, species_index, species_name

__all__ = [
    "CrystalBatch",
    "Instrument",
    "ProfileParams",
    "ReflectionData",
    "bragg_intensities",
    "chebyshev_background",
    "d_min_for",
    "d_spacing",
    "form_factor",
    "generate_hkl",
    "lorentz_polarisation",
    "march_dollase",
    "peak_shift",
    "pseudo_voigt",
    "reciprocal_lattice",
    "reflection_table",
    "reflection_tables",
    "simulate",
    "simulate_structures",
    "species_index",
    "species_name",
    "tch_widths",
]
