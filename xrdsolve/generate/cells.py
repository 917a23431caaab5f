"""Cells read from the pattern for lattice-given sampling: the solve's indexing, and the formula units Z
that fill each indexed cell."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Composition

from xrdsolve.composition import z_candidates
from xrdsolve.conditioning.pattern import Pattern
from xrdsolve.errors import UsageError

from .data import MAX_ATOMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexedCell:
    """A conventional cell from indexing with the cell content that fills it.

    ``lattice`` (3,3) Å, rows a, b, c; ``parameters`` a, b, c (Å), α, β, γ (degrees); ``z`` formula units
    of ``cell_content``; ``spacegroups`` the extinction-compatible space-group numbers, likeliest first.
    """

    lattice: np.ndarray
    parameters: tuple[float, float, float, float, float, float]
    crystal_system: str
    m20: float
    z: int
    cell_content: Composition
    spacegroups: list[int] = field(default_factory=list)


def indexed_cells(
    pattern: Pattern,
    composition: str | Composition,
    time_limit: float = 15.0,
    max_cells: int = 1,
    max_atoms: int = MAX_ATOMS,
    z_multiple: int = 1,
) -> tuple[list[IndexedCell], dict[str, Any]]:
    """Index ``pattern`` (peak search, dichotomy search, impurity retry; see :func:`xrdsolve.pipeline.
    index_pattern`) and pair each of the best ``max_cells`` cells with the likeliest Z of ``composition``
    (the formula, with or without Z) for its volume. Cells no Z can fill with ≤ ``max_atoms`` atoms are
    left out. With ``z_multiple`` (the Z of a known smaller cell, e.g. a primitive cell's) only its
    multiples are considered. Returns the cells (best first, possibly none) and the indexing record."""
    from xrdsolve.pipeline import index_pattern

    comp = Composition(composition) if isinstance(composition, str) else composition
    reduced = comp.reduced_composition
    found, tried = index_pattern(pattern, time_limit=time_limit, max_cells=max_cells, composition=comp)
    out: list[IndexedCell] = []
    for cell, groups in found:
        try:
            zs = z_candidates(reduced, float(cell.volume), max_atoms=max_atoms, tolerance=math.inf)
        except UsageError as exc:
            log.info("indexed cell %s left out: %s", cell.summary(), exc)
            continue
        zs = [z for z in zs if z % z_multiple == 0]
        if not zs:
            log.info("indexed cell %s left out: no multiple of Z = %d fits", cell.summary(), z_multiple)
            continue
        z = zs[0]
        lat = cell.lattice()
        out.append(
            IndexedCell(
                lattice=np.array(lat.matrix),
                parameters=tuple(float(x) for x in lat.parameters),  # type: ignore[arg-type]
                crystal_system=str(cell.crystal_system),
                m20=float(cell.m20),
                z=int(z),
                cell_content=reduced * z,
                spacegroups=[int(g) for g in groups],
            )
        )
    return out, tried
