"""Physical plausibility of a candidate structure: no two atoms far closer than their radii allow, a volume
per atom no smaller than crystals take, and the requested composition.

A profile fit cannot tell an impossible structure from a real one: eight atoms packed into a 10 Å³ cell can
place peaks where the measured ones are and reach a low Rwp. The solve leaves such candidates out before
screening and ranks any that collapse during refinement after every plausible one.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Composition, Structure

from .composition import MIN_VOLUME_FRACTION, atomic_radius, estimated_volume_per_formula

#: Shortest allowed distance between two atoms, as a fraction of the sum of their atomic radii
#: (pymatgen's empirical radii: Pt–Pt 2.70 Å, O–H 0.85 Å); in 970 MP-20 train and val structures the
#: closest pair is at 0.68 of the sum or more.
MIN_DISTANCE_FRACTION = 0.5
#: Shortest allowed distance whatever the radii, Å.
MIN_DISTANCE_FLOOR = 0.5


def implausibility(structure: Structure, composition: Composition | None = None) -> str | None:
    """Why ``structure`` cannot be a crystal structure of ``composition`` (None when it can): a reduced
    composition other than the requested one, two atoms closer than MIN_DISTANCE_FRACTION of their radius
    sum (or MIN_DISTANCE_FLOOR Å), periodic images included, or a cell smaller than MIN_VOLUME_FRACTION of
    the volume its atoms take in crystals (:func:`xrdsolve.composition.estimated_volume_per_formula`).
    Disordered sites count with their majority species' radius and their occupancy's share of the volume;
    compositions are compared as reduced formulas with occupancies."""
    if composition is not None:
        want = composition.reduced_composition
        got = structure.composition.reduced_composition
        if not want.almost_equals(got, rtol=1e-3, atol=1e-3):
            return f"composition {got.reduced_formula}, not {want.reduced_formula}"
    species = [max(site.species.items(), key=lambda kv: kv[1])[0].symbol for site in structure]
    radii = np.array([atomic_radius(s) for s in species])
    cutoff = max(MIN_DISTANCE_FLOOR, MIN_DISTANCE_FRACTION * 2.0 * float(radii.max()))
    centre, neighbour, _, dist = structure.get_neighbor_list(cutoff)
    if centre.size:
        limit = np.maximum(MIN_DISTANCE_FLOOR, MIN_DISTANCE_FRACTION * (radii[centre] + radii[neighbour]))
        if (dist < limit).any():
            k = int(np.argmin(dist - limit))
            return (
                f"{species[centre[k]]}–{species[neighbour[k]]} {dist[k]:.2f} Å apart "
                f"(at least {limit[k]:.2f} Å expected)"
            )
    estimate = estimated_volume_per_formula(structure.composition)
    if structure.volume < MIN_VOLUME_FRACTION * estimate:
        return (
            f"{structure.volume:.1f} Å³ for {structure.composition.num_atoms:g} atoms, "
            f"{structure.volume / estimate:.2f} of the volume such atoms take in crystals "
            f"(at least {MIN_VOLUME_FRACTION} expected)"
        )
    return None
