"""Sub-cells of an indexed cell that index the strong lines: the cell of the average structure of a
superstructure (vacancy or cation ordering, where weak extra reflections double or triple one axis).

The indexer rightly returns the cell that indexes *every* line; for an ordered defect structure that is the
supercell. The stoichiometric parent (the disordered average) lives in a sub-cell whose reflections are the
strong ones. :func:`strong_subcells` divides the axes of a primitive indexed cell by small integers and keeps
the divisions under which the lines the sub-cell indexes still carry most of the measured peak height.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from .observations import inv_d2
from .solution import CellSolution
from .systems import FloatArray

#: Relative length and absolute angle (degrees) tolerances of the metric classification of a sub-cell.
LENGTH_TOL = 5e-4
ANGLE_TOL = 0.05
#: Shortest lattice translation (Å) a sub-cell may have (hcp Be, a = 2.29 Å, is about the shortest known).
MIN_EDGE = 2.2
#: The symmorphic P group of highest symmetry of each crystal system: the usual symmetry of a disordered
#: average structure, tried first in a sub-cell whatever the (superstructure-modulated) absences suggest.
HOLOHEDRAL_P = {
    "cubic": 221,
    "tetragonal": 123,
    "orthorhombic": 47,
    "hexagonal": 191,
    "monoclinic": 10,
    "triclinic": 2,
}


@dataclass(frozen=True)
class SubCell:
    """A sub-cell (``cell``) of ``parent`` with the axes divided by ``divisions``; ``height_fraction`` of the
    measured peak height lies on lines it indexes (``n_indexed`` of ``n_lines``)."""

    cell: CellSolution
    parent: CellSolution
    divisions: tuple[int, int, int]
    height_fraction: float
    n_indexed: int
    n_lines: int

    def as_dict(self) -> dict[str, object]:
        return {
            "divisions": list(self.divisions),
            "a": self.cell.a,
            "b": self.cell.b,
            "c": self.cell.c,
            "crystal_system": self.cell.crystal_system,
            "volume": self.cell.volume,
            "height_fraction": round(self.height_fraction, 4),
            "lines_indexed": f"{self.n_indexed}/{self.n_lines}",
            "of": self.parent.summary(),
        }


def strong_subcells(
    solution: CellSolution,
    two_theta: FloatArray,
    height: FloatArray,
    max_index: int = 2,
    min_fraction: float = 0.5,
    tolerance: float = 0.03,
    min_edge: float = MIN_EDGE,
    *,
    same_metric: bool = False,
    complete: bool = False,
) -> list[SubCell]:
    """Sub-cells of ``solution`` (P cells only) with index 2 … ``max_index`` (product of the axis divisions)
    that index the strongest line and at least ``min_fraction`` of the summed peak height, but not every line
    (otherwise the sub-cell is simply the smaller cell), with no edge shorter than ``min_edge`` (Å; a
    pseudo-cubic metric lets absurdly thin cells index most lines). ``two_theta`` (degrees, at ``solution.wavelength``)
    and ``height`` are the measured lines; ``tolerance`` is the 2θ window (degrees) of a match. Highest
    indexed fraction first. With ``same_metric`` only divisions that keep the parent's equal edges equal
    (a hexagonal or tetragonal a = b, a cubic a = b = c) are tried, so the sub-cell keeps its crystal system;
    with ``complete`` sub-cells that index every line are kept too."""
    if solution.centring != "P" or two_theta.size == 0:
        return []
    lam = solution.wavelength
    tt = np.asarray(two_theta, dtype=float) - solution.zero_shift
    q_obs = inv_d2(tt, lam)
    q_tol = q_obs * math.radians(tolerance) / np.tan(np.radians(tt) / 2.0)
    h = np.clip(np.asarray(height, dtype=float), 0.0, None)
    total = float(h.sum())
    if total <= 0.0:
        return []
    strongest = int(np.argmax(h))
    out: list[SubCell] = []
    for div in itertools.product(range(1, max_index + 1), repeat=3):
        index = div[0] * div[1] * div[2]
        if index == 1 or index > max_index:
            continue
        a, b, c = solution.a / div[0], solution.b / div[1], solution.c / div[2]
        if min(a, b, c) < min_edge or (same_metric and not _keeps_metric(solution, div)):
            continue
        sub = _with_cell(solution, a, b, c)
        hit = _indexed_lines(sub, q_obs, q_tol)
        frac = float(h[hit].sum()) / total
        if not hit[strongest] or frac < min_fraction or (hit.all() and not complete):
            continue
        out.append(SubCell(sub, solution, (div[0], div[1], div[2]), frac, int(hit.sum()), int(hit.size)))
    out.sort(key=lambda s: -s.height_fraction)
    return out


def _keeps_metric(solution: CellSolution, div: tuple[int, ...]) -> bool:
    """True when dividing the axes by ``div`` keeps every pair of equal edges of ``solution`` equal."""
    edges = (solution.a, solution.b, solution.c)
    return all(
        div[i] == div[j]
        for i, j in ((0, 1), (0, 2), (1, 2))
        if abs(edges[i] - edges[j]) <= LENGTH_TOL * max(edges[i], edges[j])
    )


def _indexed_lines(cell: CellSolution, q_obs: FloatArray, q_tol: FloatArray) -> np.ndarray:
    """Which observed lines (1/d², Å⁻²) fall within ``q_tol`` of a reflection of the P cell ``cell``."""
    from .extinctions import _reflections

    _, q_calc = _reflections(cell, float(q_obs.max() + q_tol.max()))
    return np.asarray((np.abs(q_calc[None, :] - q_obs[:, None]) <= q_tol[:, None]).any(axis=1))


def _with_cell(solution: CellSolution, a: float, b: float, c: float) -> CellSolution:
    """``solution`` with new edge lengths (angles kept), re-classified: a sub-cell of an orthorhombic cell can
    be tetragonal or cubic, a tetragonal one cubic (axes permuted so that a tetragonal c is unique)."""
    al, be, ga = solution.alpha, solution.beta, solution.gamma
    system = solution.crystal_system
    right = all(abs(x - 90.0) <= ANGLE_TOL for x in (al, be, ga))

    def same(x: float, y: float) -> bool:
        return abs(x - y) <= LENGTH_TOL * max(x, y)

    if right and system in ("cubic", "tetragonal", "orthorhombic"):
        if same(a, b) and same(b, c):
            system = "cubic"
        elif same(a, b) or same(a, c) or same(b, c):
            system = "tetragonal"
            if same(a, c):
                a, b, c = a, c, b
            elif same(b, c):
                a, b, c = b, c, a
        else:
            system = "orthorhombic"
    volume = solution.volume * (a * b * c) / (solution.a * solution.b * solution.c)
    return replace(solution, crystal_system=system, a=a, b=b, c=c, volume=volume)


def supercells(
    solution: CellSolution, min_volume: float, max_multiplier: int = 3, max_index: int = 27
) -> list[CellSolution]:
    """The smallest supercells of ``solution`` whose volume reaches ``min_volume`` (Å³), fewest-fold first:
    diagonal ones (each axis multiplied by 1 … ``max_multiplier``, equal edges kept equal so the crystal
    system stays) and, for a hexagonal P cell, the √3 × √3 R30° cell with c multiplied by 1 …
    ``max_multiplier``; empty when the cell is already large enough or no supercell of index ≤ ``max_index``
    is. (Yb3Si5, P-62m, a 6.91 Å, indexes on its 3.99 Å sub-cell when its superstructure lines are weak.)

    The indexer returns the smallest cell that indexes every observed line; when the superstructure lines of
    an ordered structure are too weak to be seen (a Heusler or Cu₃Au-type ordering of similar scatterers),
    that cell is a sub-cell of the true one and can be too small to hold one formula unit. Its supercells
    index the same lines, with extinctions that centred groups explain (hkl all even in a doubled cubic cell).
    """
    if solution.volume >= min_volume:
        return []
    found: dict[int, list[CellSolution]] = {}
    for mult in itertools.product(range(1, max_multiplier + 1), repeat=3):
        index = mult[0] * mult[1] * mult[2]
        if index == 1 or index > max_index or solution.volume * index < min_volume:
            continue
        if not _keeps_metric(solution, mult):
            continue
        cell = _with_cell(solution, solution.a * mult[0], solution.b * mult[1], solution.c * mult[2])
        found.setdefault(index, []).append(replace(cell, hkl=solution.hkl * np.asarray(mult)))
    if solution.crystal_system == "hexagonal" and solution.centring == "P":
        # the √3 × √3 R30° cell (a' = 2a + b, b' = −a + b): the commonest hexagonal superstructure
        h, k, l_ = solution.hkl.T
        root3 = math.sqrt(3.0) * solution.a
        for m in range(1, max_multiplier + 1):
            index = 3 * m
            if index > max_index or solution.volume * index < min_volume:
                continue
            hkl = np.stack([2 * h + k, k - h, m * l_], axis=1)
            cell = replace(
                solution, a=root3, b=root3, c=solution.c * m, volume=solution.volume * index, hkl=hkl
            )
            found.setdefault(index, []).append(cell)
    return found[min(found)] if found else []
