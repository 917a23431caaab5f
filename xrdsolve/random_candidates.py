"""Symmetry-aware random candidate structures (pyxtal): the baseline the generator must beat.

Space groups are drawn from the frequencies seen in real inorganic crystals (the MP-20 training
rows, smoothed so every group stays possible), restricted to a crystal system or to a list of
groups when indexing gives one. Lattices are pyxtal's volume estimate or a given cell (Å, degrees).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import spglib
from pymatgen.core import Composition, Structure

from xrdsolve.composition import ANION_CONTACT_FRACTION
from xrdsolve.refine.indexing.extinctions import (
    hall_operations,
    operation_set,
    same_up_to_origin,
    standard_hall,
)
from xrdsolve.refine.indexing.solution import CENTRING_TRANSLATIONS

logger = logging.getLogger(__name__)

#: Space-group counts among the MP-20 training rows (../shared/data/structures/mp20_subset/train.csv).
SPACEGROUP_COUNTS: dict[int, int] = {
    1: 19, 2: 19, 4: 5, 5: 8, 6: 5, 7: 2, 8: 12, 9: 4, 10: 4, 11: 7, 12: 33, 13: 4, 14: 24, 15: 23, 19: 1,
    21: 1, 25: 2, 26: 3, 29: 1, 31: 3, 33: 3, 34: 1, 36: 4, 38: 16, 40: 1, 41: 1, 43: 2, 44: 5, 46: 1,
    47: 1, 51: 2, 53: 1, 55: 2, 57: 2, 58: 1, 59: 4, 62: 32, 63: 32, 64: 5, 65: 5, 69: 2, 71: 14, 72: 3,
    74: 15, 82: 5, 83: 1, 84: 2, 86: 2, 87: 2, 92: 1, 97: 2, 99: 1, 107: 5, 112: 1, 114: 1, 115: 3,
    116: 1, 119: 5, 121: 1, 123: 23, 124: 2, 127: 8, 129: 13, 136: 4, 137: 1, 139: 40, 140: 4, 141: 3,
    146: 1, 147: 1, 148: 14, 152: 1, 153: 1, 154: 1, 155: 1, 156: 6, 160: 12, 161: 3, 162: 1, 163: 2,
    164: 16, 166: 36, 167: 5, 174: 1, 176: 3, 186: 3, 187: 7, 189: 17, 191: 10, 193: 3, 194: 50, 198: 1,
    200: 2, 204: 3, 205: 1, 213: 1, 216: 17, 217: 1, 220: 4, 221: 19, 223: 2, 225: 119, 227: 14, 229: 2,
}  # fmt: skip
#: Pseudo-count added to every space group so unseen groups stay possible.
SMOOTHING = 0.25

CRYSTAL_SYSTEM_RANGES: dict[str, tuple[int, int]] = {
    "triclinic": (1, 2),
    "monoclinic": (3, 15),
    "orthorhombic": (16, 74),
    "tetragonal": (75, 142),
    "trigonal": (143, 167),
    "hexagonal": (168, 194),
    "cubic": (195, 230),
}


def crystal_system_of(spacegroup: int) -> str:
    """Crystal system name of an international space-group number (1–230)."""
    for name, (lo, hi) in CRYSTAL_SYSTEM_RANGES.items():
        if lo <= spacegroup <= hi:
            return name
    raise ValueError(f"space group number {spacegroup} is not in 1..230")


def spacegroup_prior(crystal_systems: Sequence[str] | None = None) -> dict[int, float]:
    """Normalised prior over space groups, optionally restricted to some crystal systems.

    ``hexagonal`` cells from indexing also admit trigonal groups (same metric).
    """
    allowed: set[int] = set(range(1, 231))
    if crystal_systems:
        systems = set(crystal_systems)
        if "hexagonal" in systems:
            systems.add("trigonal")
        allowed = {sg for sg in allowed if crystal_system_of(sg) in systems}
    weights = {sg: SPACEGROUP_COUNTS.get(sg, 0) + SMOOTHING for sg in sorted(allowed)}
    total = sum(weights.values())
    return {sg: w / total for sg, w in weights.items()}


@dataclass(frozen=True)
class CandidateSpec:
    """Where a random candidate came from (recorded as provenance)."""

    spacegroup: int
    z: int
    seed: int
    lattice_given: bool
    source: str = "random"
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "spacegroup": self.spacegroup,
            "z": self.z,
            "seed": self.seed,
            "lattice_given": self.lattice_given,
            **self.extra,
        }


def _species_counts(comp: Composition, z: int) -> tuple[list[str], list[int]] | None:
    species, counts = [], []
    for el, amt in comp.get_el_amt_dict().items():
        n = amt * z
        if abs(n - round(n)) > 1e-6:
            return None
        species.append(el)
        counts.append(round(n))
    return species, counts


def _pyxtal_lattice(params: Sequence[float], spacegroup: int):  # -> pyxtal Lattice
    from pyxtal.lattice import Lattice as PyxtalLattice

    ltype = crystal_system_of(spacegroup)
    if ltype == "trigonal":
        ltype = "hexagonal"
    a, b, c, alpha, beta, gamma = (float(x) for x in params)
    return PyxtalLattice.from_para(a, b, c, alpha, beta, gamma, ltype=ltype)


#: Most Wyckoff sites one species may occupy in an enumerated assignment.
MAX_SITES_PER_SPECIES = 6


def _species_options(
    count: int, sites: Sequence[tuple[str, int, bool]], max_sites: int, cap: int
) -> list[tuple[int, ...]]:
    """Multisets of site indices (into ``sites``: label, multiplicity, has free coordinates) whose
    multiplicities sum to ``count``; a site without free coordinates is used at most once. Fewest
    sites first, at most ``cap``."""
    found: list[tuple[int, ...]] = []

    def walk(start: int, left: int, chosen: list[int]) -> None:
        if len(found) >= 50 * cap:
            return
        if left == 0:
            found.append(tuple(chosen))
            return
        if len(chosen) >= max_sites:
            return
        for i in range(start, len(sites)):
            _, mult, free = sites[i]
            if mult > left:
                continue
            chosen.append(i)
            walk(i if free else i + 1, left - mult, chosen)
            chosen.pop()

    walk(0, count, [])
    found.sort(key=lambda combo: (len(combo), combo))
    return found[:cap]


def fits_spacegroup(composition: Composition, z: int, spacegroup: int) -> bool:
    """Whether ``z`` formula units of ``composition`` fill Wyckoff sites of ``spacegroup``'s conventional
    cell (at least one assignment of :func:`wyckoff_combinations`)."""
    sc = _species_counts(composition.reduced_composition, z)
    return sc is not None and _has_assignment(int(spacegroup), tuple(sorted(sc[1])))


@functools.lru_cache(maxsize=4096)
def _has_assignment(spacegroup: int, counts: tuple[int, ...]) -> bool:
    return bool(wyckoff_combinations(spacegroup, counts, limit=1))


def wyckoff_combinations(spacegroup: int, counts: Sequence[int], limit: int = 64) -> list[list[list[str]]]:
    """Wyckoff-site assignments (per species, e.g. ``[['2a'], ['4f']]``) realising ``counts`` atoms in
    ``spacegroup``'s conventional cell, simplest first (fewest sites in all), at most ``limit``.

    A site with no free coordinate holds one species at most; at most
    :data:`MAX_SITES_PER_SPECIES` sites per species. Exhaustive within those bounds and fast (a
    bounded depth-first walk, unlike pyxtal's full product, which takes minutes for big groups)."""
    from pyxtal.symmetry import Group

    try:
        group = Group(spacegroup)
    except Exception:
        return []
    sites = [(wp.get_label(), int(wp.multiplicity), wp.get_dof() > 0) for wp in group]
    general = max(m for _, m, _ in sites)
    options = [
        _species_options(int(c), sites, max(MAX_SITES_PER_SPECIES, -(-int(c) // general)), 4 * limit)
        for c in counts
    ]
    if any(not o for o in options):
        return []
    combos: list[tuple[int, list[tuple[int, ...]]]] = []
    order = sorted(range(len(counts)), key=lambda i: len(options[i]))  # most constrained first

    def walk(k: int, used: set[int], chosen: dict[int, tuple[int, ...]], n_sites: int) -> None:
        if len(combos) >= 50 * limit:
            return
        if k == len(order):
            combos.append((n_sites, [chosen[i] for i in range(len(counts))]))
            return
        i = order[k]
        for opt in options[i]:
            fixed = {j for j in opt if not sites[j][2]}
            if fixed & used:
                continue
            chosen[i] = opt
            walk(k + 1, used | fixed, chosen, n_sites + len(opt))
        chosen.pop(i, None)

    walk(0, set(), {}, 0)
    combos.sort(key=lambda c: (c[0], str(c[1])))
    return [[[sites[j][0] for j in opt] for opt in combo] for _, combo in combos[:limit]]


#: Closest approach allowed between two atoms, as a fraction of the sum of their covalent radii.
MIN_DISTANCE_FACTOR = 0.7
_ORTHO_PERMUTATIONS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))


def _covalent_radius(symbol: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    radius = CovalentRadius.radius.get(symbol)
    if radius is None:
        radius = float(Element(symbol).atomic_radius or 1.5)
    return float(radius)


def place_on_wyckoff_sites(
    spacegroup: int,
    species: Sequence[str],
    combo: Sequence[Sequence[str]],
    lattice: Sequence[float],
    rng: np.random.Generator,
    tries: int = 40,
) -> Structure | None:
    """Atoms on the given Wyckoff sites (standard setting) of a given cell, with random free coordinates.

    ``lattice`` is a, b, c (Å), α, β, γ (degrees). Returns None when no try keeps every pair of atoms
    further apart than :data:`MIN_DISTANCE_FACTOR` × the sum of their covalent radii.
    """
    drawn = WyckoffSampler(spacegroup, species, combo, lattice).draw(rng, 1, tries)[1]
    return drawn[0] if drawn else None


class WyckoffSampler:
    """Structures of one Wyckoff assignment (standard setting) in one cell, built from *general points*:
    an (n, sites, 3) array in [0, 1) that each site's first operation moves onto the site — so a random
    array is a random structure and a small change of it a small move of the free coordinates.

    ``lattice`` a, b, c (Å), α, β, γ (degrees); ``combo`` the site labels per species; ``anion_radii``
    (element → ionic radius, Å; :func:`~xrdsolve.composition.anion_radii`) the full-charge anions, two of
    which keep at least :data:`~xrdsolve.composition.ANION_CONTACT_FRACTION` × the sum of their ionic radii
    apart.
    """

    def __init__(
        self,
        spacegroup: int,
        species: Sequence[str],
        combo: Sequence[Sequence[str]],
        lattice: Sequence[float],
        anion_radii: Mapping[str, float] | None = None,
    ) -> None:
        from pymatgen.core import Lattice

        group = _group(spacegroup)
        wps = [group.get_wyckoff_position(label) for sites in combo for label in sites]
        site_species = [sp for sp, sites in zip(species, combo, strict=True) for _ in sites]
        radii = np.array([_covalent_radius(sp) for sp in site_species])
        self.n_sites = len(wps)
        self.has_free_coordinates = any(wp.get_dof() > 0 for wp in wps)
        self._first = [wp.ops[0].affine_matrix for wp in wps]  # general point → point of the site
        self._orbit_ops = [np.array([op.affine_matrix for op in wp.ops]) for wp in wps]
        owner = np.concatenate([np.full(len(ops), k) for k, ops in enumerate(self._orbit_ops)])
        self._labels = [site_species[k] for k in owner]
        limit = MIN_DISTANCE_FACTOR * (radii[owner][:, None] + radii[owner][None, :])
        if anion_radii:
            ionic = np.array([anion_radii.get(sp, np.nan) for sp in site_species])[owner]
            anion_pair = ANION_CONTACT_FRACTION * (ionic[:, None] + ionic[None, :])
            limit = np.where(np.isnan(anion_pair), limit, np.maximum(limit, anion_pair))
        np.fill_diagonal(limit, 0.0)
        self._limit = limit
        self._lattice = Lattice.from_parameters(*lattice)
        self.spacegroup = int(spacegroup)

    @property
    def lattice(self) -> Any:
        """The cell (pymatgen Lattice)."""
        return self._lattice

    @property
    def labels(self) -> list[str]:
        """Species of each atom, in the order of :meth:`coordinates`."""
        return list(self._labels)

    @property
    def distance_limits(self) -> np.ndarray:
        """(atoms, atoms) closest allowed distance (Å) of each pair; 0 on the diagonal."""
        return self._limit

    def atom_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each atom as an affine map of its site's general point: site (A,), rotation (A,3,3), shift (A,3),
        with atom a at rotation[a] @ p[site[a]] + shift[a] (modulo 1)."""
        maps = [ops @ first for first, ops in zip(self._first, self._orbit_ops, strict=True)]
        site = np.concatenate([np.full(len(m), k) for k, m in enumerate(maps)])
        full = np.concatenate(maps)
        return site, full[:, :3, :3], full[:, :3, 3]

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        """(n, atoms, 3) fractional coordinates in [0, 1) of general points (n, sites, 3)."""
        return _orbits(self._first, self._orbit_ops, points)

    def apart(self, frac: np.ndarray) -> np.ndarray:
        """(n,) True where every pair of atoms (periodic images included) is further apart than
        :data:`MIN_DISTANCE_FACTOR` × the sum of their covalent radii."""
        ok = np.empty(len(frac), dtype=bool)
        # pymatgen's compiled periodic distances, draw by draw (a dense 27-image array is slower)
        for i, f in enumerate(frac):
            dist = self._lattice.get_all_distances(f, f)
            np.fill_diagonal(dist, np.inf)
            ok[i] = bool(np.all(dist > self._limit))
        return ok

    def structures(self, frac: np.ndarray) -> list[Structure]:
        """pymatgen Structures of fractional coordinates (n, atoms, 3)."""
        return [Structure(self._lattice, self._labels, f) for f in frac]

    def draw(self, rng: np.random.Generator, n: int, tries: int = 40) -> tuple[np.ndarray, list[Structure]]:
        """Up to ``n`` random structures whose atoms keep apart, drawn ``n`` at a time for at most ``tries``
        rounds (fewer when nothing is accepted in the first rounds), with their general points; one when
        the assignment has no free coordinates."""
        chosen = self.draw_points(rng, n, tries)
        return chosen, self.structures(self.coordinates(chosen)) if len(chosen) else []

    def draw_points(self, rng: np.random.Generator, n: int, tries: int = 40) -> np.ndarray:
        """General points (≤ n, sites, 3) of random structures whose atoms keep apart, as :meth:`draw`."""
        if not self.has_free_coordinates:
            n = 1
        points: list[np.ndarray] = []
        for round_ in range(tries):
            if not points and round_ * n >= 8 * n + tries:
                break  # hardly any draw keeps the atoms apart: give up early
            trial = rng.random((n, self.n_sites, 3))
            ok = self.apart(self.coordinates(trial))
            points.extend(trial[ok][: n - len(points)])
            if len(points) == n:
                break
        if not points:
            return np.empty((0, self.n_sites, 3))
        return np.array(points)


@functools.lru_cache(maxsize=256)
def _group(spacegroup: int) -> Any:
    """pyxtal's Group (building one costs milliseconds; the solve asks for the same few many times)."""
    from pyxtal.symmetry import Group

    return Group(spacegroup)


def _orbits(first: Sequence[np.ndarray], orbit_ops: Sequence[np.ndarray], points: np.ndarray) -> np.ndarray:
    """(n, A, 3) fractional coordinates in [0, 1): each site's general point ``points[:, k]`` moved onto the
    site by ``first[k]`` (4×4 affine), then its orbit by ``orbit_ops[k]`` (m_k×4×4), concatenated."""
    parts = []
    for k, (f, ops) in enumerate(zip(first, orbit_ops, strict=True)):
        p = points[:, k] @ f[:3, :3].T + f[:3, 3]  # (n, 3)
        orbit = np.einsum("nj,mij->nmi", p, ops[:, :3, :3]) + ops[:, :3, 3]
        parts.append(orbit)
    return np.mod(np.concatenate(parts, axis=1), 1.0)


def distinct_fixed_first(
    spacegroup: int, species: Sequence[str], combos: Sequence[list[list[str]]], lattice: Sequence[float]
) -> list[list[list[str]]]:
    """``combos`` reordered: within each number of sites, assignments on sites without free coordinates
    come first, one per distinct structure (origin shifts of the group's normaliser make many of them the
    same crystal: LaNbO3 in P4/mmm has 64 assignments of 7 distinct structures) and the most open first
    (largest smallest ratio of interatomic distance to the sum of covalent radii); assignments with free
    coordinates follow, in their order."""
    from pyxtal.symmetry import Group

    try:
        group = Group(spacegroup)
    except Exception:
        return list(combos)
    dof = {wp.get_label(): wp.get_dof() for wp in group}
    by_size: dict[int, tuple[list[tuple[float, list[list[str]]]], list[list[list[str]]]]] = {}
    seen: set[tuple[Any, ...]] = set()
    for combo in combos:
        n_sites = sum(len(sites) for sites in combo)
        fixed, free = by_size.setdefault(n_sites, ([], []))
        if any(dof.get(label, 1) > 0 for sites in combo for label in sites):
            free.append(combo)
            continue
        structure = place_on_wyckoff_sites(spacegroup, species, combo, lattice, np.random.default_rng(0), 1)
        if structure is None:
            continue  # atoms on top of each other whatever the coordinates: never a crystal
        key, openness = _distance_fingerprint(structure)
        if key in seen:
            continue
        seen.add(key)
        fixed.append((openness, combo))
    out: list[list[list[str]]] = []
    for n_sites in sorted(by_size):
        fixed, free = by_size[n_sites]
        out.extend(combo for _, combo in sorted(fixed, key=lambda fc: -fc[0]))
        out.extend(free)
    return out


def _distance_fingerprint(structure: Structure) -> tuple[tuple[Any, ...], float]:
    """(Sorted shortest periodic distances per species pair, rounded to 0.01 Å — the same for structures
    that differ by an origin shift —, smallest distance / sum of covalent radii.)"""
    dist = structure.lattice.get_all_distances(structure.frac_coords, structure.frac_coords)
    symbols = [site.specie.symbol for site in structure]
    radii = np.array([_covalent_radius(sym) for sym in symbols])
    np.fill_diagonal(dist, np.inf)
    ratio = float((dist / (radii[:, None] + radii[None, :])).min()) if len(structure) > 1 else 1.0
    pairs: dict[str, list[float]] = {}
    for i in range(len(structure)):
        for j in range(i + 1, len(structure)):
            pair = "-".join(sorted((symbols[i], symbols[j])))
            pairs.setdefault(pair, []).append(round(float(dist[i, j]), 2))
    key = tuple(sorted((pair, tuple(sorted(d))) for pair, d in pairs.items()))
    return key, ratio


#: One step of a Wyckoff walk: space group, site labels per species, axis order of the given cell
WyckoffStep = tuple[int, list[list[str]], tuple[int, int, int]]


@functools.lru_cache(maxsize=256)
def distinct_axis_orders(spacegroup: int) -> tuple[tuple[int, int, int], ...]:
    """The axis orders (of :data:`_ORTHO_PERMUTATIONS`, in that order) that put an orthorhombic group's
    standard setting on the edges of a cell in distinct ways.

    Relabelling the axes by σ can leave a setting unchanged (up to an origin shift): every σ for Pmmm and
    Immm, the cyclic ones for Pbca, a ↔ b for Cmmm. Then axis order p∘σ (group axis i on the cell's edge
    p[σ[i]]) gives the same structures as p, with the Wyckoff sites relabelled, and the Wyckoff walk, which
    tries every assignment, would try each structure again.
    """
    rotations, translations = _standard_operations(spacegroup)
    reference = operation_set(rotations, translations)
    unchanged = []
    for sigma in _ORTHO_PERMUTATIONS:
        m = np.eye(3, dtype=np.int64)[list(sigma)]  # row i picks axis sigma[i]
        rot = np.einsum("ij,ojk,lk->oil", m, rotations, m)
        if same_up_to_origin(rot, translations @ m.T, reference):
            unchanged.append(sigma)
    kept: list[tuple[int, int, int]] = []
    for p in _ORTHO_PERMUTATIONS:
        if not any(tuple(k[sigma[i]] for i in range(3)) == p for k in kept for sigma in unchanged):
            kept.append(p)
    return tuple(kept)


def axis_orders_on(spacegroup: int, centring: str) -> tuple[tuple[int, int, int], ...]:
    """The :func:`distinct_axis_orders` of an orthorhombic group that put its lattice centring on the
    centring of the cell (``centring``: its indexed lattice letter, A, B, C, I or F); all of them on a
    primitive cell (indexing may have missed a centring the extinctions allow) or when none does.

    A C-centred group's centring (½, ½, 0) lies on the cell's edges p[0], p[1] in axis order p: on a B
    cell only the orders with p[1] = 1 describe the cell's lattice; the others build structures on a lattice
    the pattern does not have. Measured: SrIn4Pd (benchmark pattern 52, Cmcm in a B-centred 608 Å³ cell)."""
    orders = distinct_axis_orders(spacegroup)
    if centring not in CENTRING_TRANSLATIONS or centring == "P":
        return orders
    cell_translations = set(CENTRING_TRANSLATIONS[centring])
    info = spglib.get_spacegroup_type(standard_hall(spacegroup))
    group_translations = CENTRING_TRANSLATIONS.get(info.international_short[0], ()) if info else ()
    # group axis i lies on the cell's edge p[i]: a group translation t is the cell translation u, u[p[i]] = t[i]
    kept = tuple(
        p
        for p in orders
        if all(tuple(t[p.index(j)] for j in range(3)) in cell_translations for t in group_translations)
    )
    return kept or orders


def _standard_operations(spacegroup: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (n, 3, 3) and translations (n, 3) of ``spacegroup``'s standard setting (spglib's first
    Hall setting of the number), centring translations included."""
    return hall_operations(standard_hall(spacegroup))


def permuted_cell(lattice: Sequence[float], perm: Sequence[int]) -> tuple[float, ...]:
    """a, b, c (Å) of ``lattice`` taken in the axis order ``perm``, angles (degrees) kept (the plan's
    axis orders are those of orthorhombic cells, all angles 90°)."""
    return (*(float(lattice[p]) for p in perm), *(float(x) for x in lattice[3:]))


def wyckoff_plan(
    composition: Composition,
    z: int,
    spacegroups: Sequence[int],
    lattice: Sequence[float],
    limit: int = 64,
    centring: str = "P",
) -> tuple[list[str], list[WyckoffStep]]:
    """The species (element symbols) and the Wyckoff assignments of ``composition`` × ``z`` in each of
    ``spacegroups`` (in the given order; each group's ``limit`` simplest assignments, distinct fixed-site
    assignments before those with free coordinates), orthorhombic groups in each axis order of the cell
    ``lattice`` (a, b, c Å, α, β, γ °) that gives a distinct setting on its lattice (``centring``: the cell's
    lattice letter; :func:`axis_orders_on`). Empty when the atoms do not fit the groups' sites.

    Measured: AlVF5 (benchmark pattern 98) has 380 assignments in Immm in its indexed cell; in every axis
    order they were 2280, and its true assignment lay beyond the prescreen's first 400. It is now
    prescreened first."""
    sc = _species_counts(composition.reduced_composition, z)
    if sc is None:
        return [], []
    species, counts = sc
    plan: list[WyckoffStep] = []
    for sg in spacegroups:
        perms = (
            axis_orders_on(int(sg), centring)
            if crystal_system_of(int(sg)) == "orthorhombic"
            else ((0, 1, 2),)
        )
        for combo in distinct_fixed_first(
            int(sg), species, wyckoff_combinations(int(sg), counts, limit), lattice
        ):
            plan.extend((int(sg), combo, perm) for perm in perms)
    return list(species), plan


def enumerated_symmetric_structures(
    composition: Composition,
    z: int,
    spacegroups: Sequence[int],
    n: int,
    *,
    lattice: Sequence[float],
    seed: int = 0,
    centring: str = "P",
) -> list[tuple[Structure, CandidateSpec]]:
    """Up to ``n`` structures in a given cell that walk through the Wyckoff assignments of each group.

    Space groups are taken in the given order (e.g. extinction hints, most likely first) and each
    one's assignments simplest first, with random free coordinates; when every assignment has one
    structure, the walk starts again with new coordinates. Systematic where random draws keep missing
    the few assignments small structures have. Orthorhombic cells are tried in every axis order that
    gives a distinct setting (indexing sorts a ≤ b ≤ c; the group's standard setting may not).
    """
    species, plan = wyckoff_plan(composition, z, spacegroups, lattice, centring=centring)
    if not plan:
        return []
    rng = np.random.default_rng(seed)
    out: list[tuple[Structure, CandidateSpec]] = []
    failed: set[int] = set()
    i = 0
    while len(out) < n and len(failed) < len(plan):
        j = i % len(plan)
        i += 1
        if j in failed:
            continue
        sg, combo, perm = plan[j]
        cell = permuted_cell(lattice, perm)
        structure = place_on_wyckoff_sites(sg, species, combo, cell, rng)
        if structure is None:
            failed.add(j)
            continue
        extra: dict[str, object] = {"wyckoff": ["+".join(sites) for sites in combo], "axes": list(perm)}
        out.append((structure, CandidateSpec(sg, z, seed, True, source="enumerated", extra=extra)))
    return out


def random_symmetric_structures(
    composition: Composition,
    z_values: Sequence[int],
    n: int,
    *,
    seed: int = 0,
    crystal_systems: Sequence[str] | None = None,
    spacegroups: Sequence[int] | None = None,
    lattice: Sequence[float] | None = None,
    max_attempts_factor: int = 8,
) -> list[tuple[Structure, CandidateSpec]]:
    """Draw up to ``n`` random symmetric structures of ``composition`` (reduced formula × Z).

    Parameters
    ----------
    z_values : formula units per cell to spread the candidates over (each gets an equal share).
    crystal_systems, spacegroups : restrict the groups drawn (``spacegroups`` wins).
    lattice : a, b, c (Å), α, β, γ (degrees) of a conventional cell to place atoms in (e.g. from
        indexing); only groups of its crystal system should be given with it.

    Returns fewer than ``n`` structures when pyxtal cannot place the atoms in the allowed groups.
    The same seed gives the same structures.
    """
    from pyxtal import pyxtal
    from pyxtal.symmetry import Group

    rng = np.random.default_rng(seed)
    if spacegroups:
        # groups allowed by the data (e.g. extinction hints): half uniform, half the real-crystal prior
        seen = {int(sg): SPACEGROUP_COUNTS.get(int(sg), 0) + SMOOTHING for sg in spacegroups}
        total = sum(seen.values())
        prior = {k: 0.5 / len(seen) + 0.5 * v / total for k, v in seen.items()}
    else:
        prior = spacegroup_prior(crystal_systems)
    groups = np.array(list(prior))
    probs = np.array([prior[g] for g in groups])

    reduced = composition.reduced_composition
    out: list[tuple[Structure, CandidateSpec]] = []
    compat_cache: dict[tuple[int, tuple[int, ...]], bool] = {}
    zs = [z for z in z_values if _species_counts(reduced, z) is not None] or list(z_values)
    attempts = 0
    while len(out) < n and attempts < n * max_attempts_factor:
        z = zs[attempts % len(zs)]
        attempts += 1
        sc = _species_counts(reduced, z)
        if sc is None:
            continue
        species, counts = sc
        sg = int(rng.choice(groups, p=probs))
        key = (sg, tuple(counts))
        if key not in compat_cache:
            try:
                compat_cache[key] = bool(Group(sg).check_compatible(counts)[0])
            except Exception:  # pyxtal raises on exotic inputs; treat as incompatible
                compat_cache[key] = False
        if not compat_cache[key]:
            continue
        sub_seed = int(rng.integers(0, 2**31 - 1))
        crystal = pyxtal()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kwargs = {}
                if lattice is not None:
                    kwargs["lattice"] = _pyxtal_lattice(lattice, sg)
                crystal.from_random(3, sg, species, counts, random_state=sub_seed, max_count=20, **kwargs)
        except Exception as exc:  # pyxtal failures are expected for tight groups: try another draw
            logger.debug("pyxtal failed for sg %d %s: %s", sg, counts, exc)
            continue
        if not crystal.valid:
            continue
        structure = crystal.to_pymatgen()
        out.append((structure, CandidateSpec(sg, z, sub_seed, lattice is not None)))
    if len(out) < n:
        logger.info("random candidates: %d of %d placed after %d attempts", len(out), n, attempts)
    return out
