"""Monoclinic cells in the standard setting of their space group (b unique, cell choice 1).

Indexing gives a monoclinic cell in whatever cell choice its search met first: an I- or A-centred cell, a
glide along a or along a + c. Structures are built in each group's standard setting (C-centred, glide
along c), so a cell in another choice would carry them on the wrong lattice. The basis change to the
standard setting is found from the space-group operations themselves, not from a table: of the cell choices
of International Tables A (b unique: 1, 2, 3, each also with a and c interchanged), the one that turns
spglib's Hall setting into the group's standard one, up to an origin shift.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import spglib
from pymatgen.core import Lattice

from .extinctions import admissible_hints, hall_operations, operation_set, same_up_to_origin, standard_hall
from .observations import Peaks
from .solution import CENTRING_TRANSLATIONS, CellSolution
from .systems import IntArray

#: Basis changes between b-unique monoclinic cell choices (rows: the new a, b, c in the old basis;
#: determinant +1): cell choice 2 → 1, 3 → 1 (International Tables A, 5.1), and a ↔ c with b reversed.
_CHOICE_CHANGES = (
    np.array([[0, 0, 1], [0, 1, 0], [-1, 0, -1]]),
    np.array([[-1, 0, -1], [0, 1, 0], [1, 0, 0]]),
)
_SWAP_A_C = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]])


@functools.lru_cache(maxsize=128)
def to_standard_setting(hall: int) -> IntArray | None:
    """Basis change M (rows: the standard cell's a, b, c in the basis of Hall setting ``hall``) that turns a
    b-unique monoclinic setting into its group's standard setting; None when no cell-choice change does."""
    info = spglib.get_spacegroup_type(hall)
    if info is None:
        return None
    reference = operation_set(*hall_operations(standard_hall(info.number)))
    rotations, translations = hall_operations(hall)
    changes = [np.eye(3, dtype=np.int64), *_CHOICE_CHANGES]
    for m in [*changes, *(c @ _SWAP_A_C for c in changes)]:
        # new fractional coordinates x' = M⁻ᵀ x: R' = M⁻ᵀ R Mᵀ, t' = M⁻ᵀ t
        inv_t = np.linalg.inv(m.T.astype(np.float64))
        rot = np.rint(np.einsum("ij,ojk,kl->oil", inv_t, rotations, m.T)).astype(np.int64)
        if same_up_to_origin(rot, translations @ inv_t.T, reference):
            return m.astype(np.int64)
    return None


def transformed(solution: CellSolution, change: IntArray) -> CellSolution:
    """``solution`` described in the basis ``change`` (rows: new a, b, c in the old basis, determinant ±1),
    its lines' hkl and its centring letter with it."""
    lattice = Lattice(change @ solution.lattice().matrix)
    a, b, c = lattice.abc
    alpha, beta, gamma = lattice.angles
    return dataclasses.replace(
        solution,
        a=a,
        b=b,
        c=c,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        centring=_centring_after(change, solution.centring),
        hkl=solution.hkl @ change.T,
    )


def _centring_after(change: IntArray, centring: str) -> str:
    """The centring letter, in the basis ``change``, of a lattice with ``centring`` in the old basis."""
    old = np.array(CENTRING_TRANSLATIONS[centring], dtype=np.float64).reshape(-1, 3)
    new = np.mod(old @ np.linalg.inv(change.astype(np.float64)), 1.0)  # x' = M⁻ᵀ x, as rows
    key = {tuple(np.round(v, 6) % 1.0) for v in new}
    for letter, vectors in CENTRING_TRANSLATIONS.items():
        if {tuple(np.round(np.array(v), 6) % 1.0) for v in vectors} == key:
            return letter
    raise ValueError(f"no centring letter for the translations {sorted(key)}")


def standard_monoclinic_setting(solution: CellSolution, peaks: Peaks) -> CellSolution:
    """A monoclinic ``solution`` in the standard setting of its best extinction hint's group (C-centred,
    glide along c), with β brought near 90° (a trial cell can come with β ≈ 160°); any other solution
    unchanged. ``peaks`` are the observed lines the hints judge."""
    if solution.crystal_system != "monoclinic":
        return solution
    hints = admissible_hints(solution, peaks, max_hints=1)
    change = to_standard_setting(hints[0].hall_number) if hints else None
    standard = solution if change is None else transformed(solution, change)
    less_oblique = _less_oblique(standard)
    if np.array_equal(less_oblique, np.eye(3, dtype=np.int64)):
        return standard
    return transformed(standard, less_oblique)


def _less_oblique(solution: CellSolution) -> IntArray:
    """A basis change that brings β of a b-unique cell near 90° and keeps its lattice centring and a glide
    along c: a → a − k c for P and A cells, c → c − k a for C cells (the cell-choice changes can give
    β ≈ 150°: Ho2Cr2C3's P2₁/a hint in its 10.45 × 3.37 × 5.56 Å, 106° cell)."""
    m = solution.lattice().matrix
    a, c = m[0], m[2]
    change = np.eye(3, dtype=np.int64)
    if solution.centring in ("P", "A"):
        change[0, 2] = -round(float(a @ c) / float(c @ c))
    elif solution.centring == "C":
        change[2, 0] = -round(float(a @ c) / float(a @ a))
    return change
