"""The result of indexing: one ranked unit cell with its figures of merit and hkl assignment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import spglib
from pymatgen.core import Lattice, Structure

from .systems import FloatArray, IntArray

#: Centring translations (fractional, besides the origin) of each lattice-centring letter.
CENTRING_TRANSLATIONS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "P": (),
    "I": ((0.5, 0.5, 0.5),),
    "F": ((0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)),
    "A": ((0.0, 0.5, 0.5),),
    "B": ((0.5, 0.0, 0.5),),
    "C": ((0.5, 0.5, 0.0),),
    "R": ((2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)),  # obverse, hexagonal axes
    "Rrev": ((1 / 3, 2 / 3, 1 / 3), (2 / 3, 1 / 3, 2 / 3)),  # reverse, hexagonal axes
}


def centring_allows(centring: str, hkl: IntArray) -> np.ndarray:
    """Boolean mask of reflections (…, 3) not extinguished by the lattice ``centring``."""
    h, k, l_ = hkl[..., 0], hkl[..., 1], hkl[..., 2]
    if centring == "P":
        return np.ones(h.shape, dtype=bool)
    if centring == "I":
        return (h + k + l_) % 2 == 0
    if centring == "F":
        return ((h + k) % 2 == 0) & ((k + l_) % 2 == 0)
    if centring == "A":
        return (k + l_) % 2 == 0
    if centring == "B":
        return (h + l_) % 2 == 0
    if centring == "C":
        return (h + k) % 2 == 0
    if centring == "R":
        return (-h + k + l_) % 3 == 0
    if centring == "Rrev":
        return (h - k + l_) % 3 == 0
    raise ValueError(f"unknown centring {centring!r}")


@dataclass(frozen=True)
class CellSolution:
    """One indexing solution: a conventional cell (Å, degrees) in ``crystal_system`` with ``centring``.

    ``zero_shift`` (degrees 2θ) is defined by 2θ_true = 2θ_obs − zero_shift. ``m20`` is de Wolff's M_N with
    N = ``m_lines`` (20 when there are enough lines), ``f_n`` Smith–Snyder F_N with N = ``f_lines`` and
    mean |Δ2θ| ``f_delta`` (degrees) over ``f_possible`` possible lines. ``hkl`` (N, 3) indexes the observed
    lines used (``indexed`` marks lines within tolerance), ``residual`` their 2θ_obs − zero − 2θ_calc.
    """

    crystal_system: str
    centring: str
    a: float
    b: float
    c: float
    alpha: float
    beta: float
    gamma: float
    volume: float
    zero_shift: float
    m20: float
    m_lines: int
    f_n: float
    f_lines: int
    f_delta: float
    f_possible: int
    n_indexed: int
    n_unindexed: int
    hkl: IntArray = field(repr=False)
    indexed: np.ndarray = field(repr=False)
    residual: FloatArray = field(repr=False)
    two_theta: FloatArray = field(repr=False)
    wavelength: float = field(repr=False)

    @property
    def abc(self) -> tuple[float, float, float]:
        return (self.a, self.b, self.c)

    @property
    def angles(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)

    def lattice(self) -> Lattice:
        """The conventional cell as a pymatgen Lattice."""
        return Lattice.from_parameters(self.a, self.b, self.c, self.alpha, self.beta, self.gamma)

    def primitive_lattice(self) -> Lattice:
        """A primitive cell of the (centred) lattice."""
        return primitive_lattice(self.lattice(), self.centring)

    def reduced_lattice(self) -> Lattice:
        """Niggli-reduced primitive cell: the canonical form used to compare and deduplicate solutions."""
        return self.primitive_lattice().get_niggli_reduced_lattice()

    @property
    def centring_symbol(self) -> str:
        return "R" if self.centring == "Rrev" else self.centring

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (lengths Å, angles degrees, volume Å³, zero shift degrees 2θ)."""
        return {
            "crystal_system": self.crystal_system,
            "centring": self.centring_symbol,
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "volume": self.volume,
            "zero_shift": self.zero_shift,
            "M20": self.m20,
            "M_lines": self.m_lines,
            "F_N": self.f_n,
            "F_lines": self.f_lines,
            "F_delta_2theta": self.f_delta,
            "F_possible": self.f_possible,
            "n_indexed": self.n_indexed,
            "n_unindexed": self.n_unindexed,
            "hkl": self.hkl.tolist(),
        }

    def summary(self) -> str:
        """One line: system, centring, cell, volume and figures of merit."""
        return (
            f"{self.crystal_system:<12} {self.centring_symbol} a={self.a:.5f} b={self.b:.5f} c={self.c:.5f} "
            f"al={self.alpha:.3f} be={self.beta:.3f} ga={self.gamma:.3f} V={self.volume:.2f} "
            f"zero={self.zero_shift:+.4f} M{self.m_lines}={self.m20:.1f} "
            f"F{self.f_lines}={self.f_n:.1f}({self.f_delta:.4f},{self.f_possible}) "
            f"unindexed={self.n_unindexed}"
        )


def primitive_lattice(lattice: Lattice, centring: str) -> Lattice:
    """Primitive cell of ``lattice`` with the given centring letter."""
    if centring == "P":
        return lattice
    frac = [(0.0, 0.0, 0.0), *CENTRING_TRANSLATIONS[centring]]
    s = Structure(lattice, ["H"] * len(frac), frac)
    return s.get_primitive_structure(tolerance=0.01 * min(lattice.abc)).lattice


#: Largest space-group number of each crystal system (hexagonal includes trigonal).
_SYSTEM_OF_NUMBER = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"))


def metric_system(lattice: Lattice, rel_tol: float = 2e-3) -> str:
    """Crystal system of the lattice's metric (holohedry), lengths and angles matching within about ``rel_tol``
    (relative; spglib's distance tolerance is ``rel_tol`` × V^⅓): "triclinic" … "cubic", "hexagonal" for
    trigonal and hexagonal lattices."""
    symprec = rel_tol * lattice.volume ** (1.0 / 3.0)
    data = spglib.get_symmetry_dataset((lattice.matrix.tolist(), [[0.0, 0.0, 0.0]], [1]), symprec=symprec)
    number = 1 if data is None else int(data.number)
    for top, name in _SYSTEM_OF_NUMBER:
        if number <= top:
            return name
    return "hexagonal" if number <= 194 else "cubic"


def same_lattice(a: Lattice, b: Lattice, ltol: float = 0.005, atol: float = 0.5) -> bool:
    """Whether two cells describe the same lattice (fractional length and angle tolerances)."""
    if abs(a.volume - b.volume) > 3 * ltol * max(a.volume, b.volume):
        return False
    return a.find_mapping(b, ltol=ltol, atol=atol) is not None
