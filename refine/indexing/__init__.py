"""Powder indexing: unit cells from peak positions, figures of merit, space-group hints.

Pure crystallography (numpy + pymatgen lattices). ``index_peaks(Peaks.from_two_theta(tt, wavelength))``
returns ranked :class:`CellSolution` objects; :func:`spacegroup_hints` turns one of them into lattice
centring and space groups compatible with the observed extinctions.
"""

from .indexer import IndexingOptions, index_peaks
from .merit import de_wolff_m, smith_snyder_f
from .observations import IndexingError, Peaks
from .solution import CellSolution, centring_allows

__all__ = [
    "CellSolution",
    "IndexingError",
    "IndexingOptions",
    "Peaks",
    "centring_allows",
    "de_wolff_m",
    "index_peaks",
    "smith_snyder_f",
]
