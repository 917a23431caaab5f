"""xrdsolve.refine — the physics: forward model of a powder pattern and Rietveld refinement.

Knows nothing about learning or file formats. Units: Å, degrees 2θ, Å⁻¹ for Q, Å² for B_iso.
"""

from .errors import RefineError
from .radiation import Geometry, Probe, Radiation

__all__ = ["Geometry", "Probe", "Radiation", "RefineError"]
