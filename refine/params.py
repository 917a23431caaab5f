"""Symmetry-constrained parameterisation of a crystal phase.

A :class:`PhaseParameterization` turns a pymatgen ``Structure`` into a small vector of free parameters and
*affine* maps from that vector to the full unit cell:

* lattice: the metric tensor ``G = M Mᵀ`` (Å²) restricted to the subspace invariant under the point group
  (``Rᵀ G R = G`` for every rotation of the space group in the input setting), so cubic cells keep a = b = c,
  hexagonal cells keep γ = 120°, monoclinic cells keep two right angles, whatever the setting;
* positions: for each asymmetric-unit site, ``x = x0 + A p`` where the columns of ``A`` span the displacements
  allowed by the site symmetry (special positions stay special), and every atom of its orbit is
  ``R_k x + t_k``; the whole cell is therefore ``frac = F p_pos + f0`` (linear, differentiable);
* occupancies per site (a mixed site keeps its total: the last species takes ``total - Σ others``);
* B_iso (Å²) per site.

All four maps are linear in the parameters, so a batch of candidates with different symmetries is stacked
into padded tensors (:func:`stack_parameterizations`) and evaluated in one tensor program.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import spglib
import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor

from .errors import StructureError

log = logging.getLogger(__name__)

LATTICE_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")
_SYMPREC = 1e-3
_EIGHT_PI2 = 8.0 * math.pi**2
#: Site occupancies (or site totals) up to this value are rounding and scaled to 1; above it they are errors.
OCCUPANCY_TOLERANCE = 1.02


# ------------------------------------------------------------------------------------------------ CIF input
def load_cif(path: str | Path) -> list[Structure]:
    """Read every data block of a CIF as a conventional-cell Structure with labels and B_iso.

    ``site.label`` keeps the CIF's ``_atom_site_label``; ``site_properties["b_iso"]`` (Å²) comes from
    ``_atom_site_B_iso_or_equiv`` or ``_atom_site_U_iso_or_equiv`` × 8π² (0 when absent).
    Raises :class:`StructureError` when the file has no atoms.
    """
    from pymatgen.io.cif import CifFile, CifParser

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser = CifParser(str(path), occupancy_tolerance=OCCUPANCY_TOLERANCE)
        try:
            structures = parser.parse_structures(primitive=False)
        except ValueError as exc:
            _check_cif_occupancies(path)
            raise StructureError(f"{path}: no structure could be read ({exc})") from None
    if not structures:
        raise StructureError(f"{path}: no atoms found")
    blocks = [b for b in CifFile.from_file(str(path)).data.values() if "_atom_site_label" in b.data]
    out = []
    for i, s in enumerate(structures):
        bmap = _b_iso_by_label(blocks[i].data) if i < len(blocks) else {}
        s.add_site_property("b_iso", [bmap.get(site.label, 0.0) for site in s])
        out.append(s)
    return out


def _check_cif_occupancies(path: Path) -> None:
    """Raise StructureError naming the first ``_atom_site_occupancy`` above 1 (beyond rounding) in a CIF."""
    from pymatgen.io.cif import CifFile

    try:
        blocks = CifFile.from_file(str(path)).data.values()
    except Exception:  # unreadable file: the caller reports the parser's own error
        return
    for block in blocks:
        labels = block.data.get("_atom_site_label")
        occs = block.data.get("_atom_site_occupancy")
        if not isinstance(labels, list) or not isinstance(occs, list):
            continue
        for lab, o in zip(labels, occs, strict=False):
            try:
                val = float(str(o).split("(")[0])
            except ValueError:
                continue
            if val > OCCUPANCY_TOLERANCE:
                raise StructureError(
                    f"{path}: site {lab} has occupancy {val:g} > 1; occupancies are fractions of a site (0..1)"
                )
    return


def _b_iso_by_label(data: dict[str, object]) -> dict[str, float]:
    labels = data.get("_atom_site_label")
    if not isinstance(labels, list):
        return {}
    for key, factor in (("_atom_site_B_iso_or_equiv", 1.0), ("_atom_site_U_iso_or_equiv", _EIGHT_PI2)):
        vals = data.get(key)
        if isinstance(vals, list) and len(vals) == len(labels):
            out = {}
            for lab, v in zip(labels, vals, strict=True):
                try:
                    out[str(lab)] = float(str(v).split("(")[0]) * factor
                except ValueError:
                    continue
            return out
    return {}


def site_b_iso(structure: Structure) -> np.ndarray:
    """B_iso per site (Å²) from site properties b_iso / B_iso / U_iso (×8π²), else 0."""
    props = structure.site_properties
    if "b_iso" in props:
        return np.asarray([0.0 if v is None else float(v) for v in props["b_iso"]])
    if "B_iso" in props:
        return np.asarray([0.0 if v is None else float(v) for v in props["B_iso"]])
    if "U_iso" in props:
        return np.asarray([0.0 if v is None else float(v) * _EIGHT_PI2 for v in props["U_iso"]])
    return np.zeros(len(structure))


# ------------------------------------------------------------------------------------------------ helpers
def _column_basis(mat: np.ndarray, tol: float = 1e-6) -> tuple[np.ndarray, list[int]]:
    """Basis of the column space of ``mat`` normalised so that the pivot rows form the identity.

    Returns (basis (n,k), pivot row indices); a free parameter then equals the shift of its pivot coordinate.
    """
    n = mat.shape[0]
    u, s, _ = np.linalg.svd(mat)
    rank = int((s > tol * max(1.0, s[0] if s.size else 1.0)).sum())
    if rank == 0:
        return np.zeros((n, 0)), []
    col = u[:, :rank]
    # choose pivot rows greedily (largest remaining magnitude) — QR with column pivoting on colᵀ
    pivots: list[int] = []
    rem = col.copy()
    for _ in range(rank):
        norms = np.linalg.norm(rem, axis=1)
        norms[pivots] = -1
        i = int(np.argmax(norms))
        pivots.append(i)
        v = rem[i] / np.linalg.norm(rem[i])
        rem = rem - np.outer(rem @ v, v)
    pivots.sort()
    basis = col @ np.linalg.inv(col[pivots, :])
    basis[np.abs(basis) < 1e-9] = 0.0
    return basis, pivots


def _sym_to_vec(g: np.ndarray) -> np.ndarray:
    return np.array([g[0, 0], g[1, 1], g[2, 2], g[1, 2], g[0, 2], g[0, 1]])


def _vec_to_sym(v: np.ndarray) -> np.ndarray:
    return np.array([[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]])


def lattice_from_metric(metric: Tensor) -> Tensor:
    """Lattice matrix (…,3,3) Å with rows a, b, c from the metric tensor G (…,3,3) Å² (Cholesky; a ∥ x).

    A metric that is not positive definite gives NaN (so a least-squares step into it is rejected).
    """
    g = metric
    l11 = torch.sqrt(g[..., 0, 0])
    l21 = g[..., 0, 1] / l11
    l31 = g[..., 0, 2] / l11
    l22 = torch.sqrt(g[..., 1, 1] - l21 * l21)
    l32 = (g[..., 1, 2] - l31 * l21) / l22
    l33 = torch.sqrt(g[..., 2, 2] - l31 * l31 - l32 * l32)
    zero = torch.zeros_like(l11)
    rows = [
        torch.stack([l11, zero, zero], -1),
        torch.stack([l21, l22, zero], -1),
        torch.stack([l31, l32, l33], -1),
    ]
    return torch.stack(rows, dim=-2)


def lattice_parameters(lattice: Tensor) -> Tensor:
    """(…,6): a, b, c in Å and α, β, γ in degrees from a lattice matrix (…,3,3) with rows a, b, c."""
    g = lattice @ lattice.transpose(-1, -2)
    a = g[..., 0, 0].clamp_min(1e-12).sqrt()
    b = g[..., 1, 1].clamp_min(1e-12).sqrt()
    c = g[..., 2, 2].clamp_min(1e-12).sqrt()
    al = torch.rad2deg(torch.arccos((g[..., 1, 2] / (b * c)).clamp(-1, 1)))
    be = torch.rad2deg(torch.arccos((g[..., 0, 2] / (a * c)).clamp(-1, 1)))
    ga = torch.rad2deg(torch.arccos((g[..., 0, 1] / (a * b)).clamp(-1, 1)))
    return torch.stack([a, b, c, al, be, ga], dim=-1)


# ------------------------------------------------------------------------------------------------ data classes
@dataclass
class SiteParameterization:
    """One asymmetric-unit site: label, Wyckoff letter, species with occupancies, free coordinates."""

    label: str
    wyckoff: str
    species: tuple[str, ...]  # species strings as pymatgen writes them ("Fe", "Fe3+")
    occupancy: tuple[float, ...]  # per species
    x0: np.ndarray  # (3,) representative coordinate (fractional)
    basis: np.ndarray  # (3,k) free displacement directions (pivot rows = identity)
    pivots: list[int]  # which of x, y, z each free parameter moves
    ops_rot: np.ndarray  # (m,3,3) rotations generating the orbit from x
    ops_trans: np.ndarray  # (m,3) translations
    b_iso: float  # Å²
    site_indices: list[int] = field(default_factory=list)  # indices of the orbit in the input structure
    x_start: np.ndarray = field(default_factory=lambda: np.zeros(3))  # symmetrised input coordinate

    @property
    def multiplicity(self) -> int:
        return int(self.ops_rot.shape[0])

    @property
    def n_free_xyz(self) -> int:
        return int(self.basis.shape[1])

    @property
    def is_mixed(self) -> bool:
        return len(self.species) > 1


@dataclass
class PhaseParameterization:
    """Symmetry-constrained parameters of one phase (see the module docstring).

    Parameter blocks (in this order in :attr:`values`): lattice metric coefficients (``n_lat``), free
    coordinates (``n_xyz``), mixed-site occupancy fractions (``n_occ``), B_iso per site (``n_b``).
    """

    name: str
    formula: str
    spacegroup_symbol: str
    spacegroup_number: int
    crystal_system: str
    metric_basis: np.ndarray  # (n_lat,3,3)
    sites: list[SiteParameterization]
    values: np.ndarray  # (P,) starting values
    names: list[str]
    kinds: list[str]  # "lattice" | "xyz" | "occ" | "biso"
    # affine maps (numpy; converted to tensors by stack_parameterizations)
    frac_map: np.ndarray  # (N,3,P)
    frac_offset: np.ndarray  # (N,3)
    occ_map: np.ndarray  # (N,P)
    occ_offset: np.ndarray  # (N,)
    b_map: np.ndarray  # (N,P)
    atom_species: list[str]  # (N,) species string of each atom entry
    atom_site: list[int]  # (N,) index of the asymmetric-unit site of each atom entry
    symops_rot: np.ndarray = field(default_factory=lambda: np.eye(3)[None])  # (K,3,3) space-group rotations
    symops_trans: np.ndarray = field(default_factory=lambda: np.zeros((1, 3)))  # (K,3) translations
    #: linear occupancy inequalities ``occ_ineq @ p + occ_ineq_offset >= 0`` (C,P), (C,) (e.g. site total ≤ 1)
    occ_ineq: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    occ_ineq_offset: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_params(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_atoms(self) -> int:
        return len(self.atom_species)

    def block(self, kind: str) -> np.ndarray:
        """Indices of the parameters of one kind ("lattice", "xyz", "occ", "biso")."""
        return np.asarray([i for i, k in enumerate(self.kinds) if k == kind], dtype=int)

    def site_occupancy_rows(self, site_index: int) -> list[tuple[str, np.ndarray, float]]:
        """(species, row (P,), offset) per species of one asymmetric-unit site: occupancy = row·p + offset."""
        out = []
        seen: set[str] = set()
        for n in range(self.n_atoms):
            if self.atom_site[n] != site_index or self.atom_species[n] in seen:
                continue
            seen.add(self.atom_species[n])
            out.append((self.atom_species[n], self.occ_map[n].copy(), float(self.occ_offset[n])))
        return out

    # ----------------------------------------------------------------- evaluation (single phase, numpy/torch)
    def lattice_matrix(self, values: Tensor) -> Tensor:
        """(…,3,3) lattice in Å from parameter vector(s) (…,P)."""
        g = torch.as_tensor(self.metric_basis, dtype=values.dtype)
        lat = values[..., self.block("lattice")]
        metric = torch.einsum("...k,kij->...ij", lat, g)
        return lattice_from_metric(metric)

    def frac(self, values: Tensor) -> Tensor:
        """(…,N,3) fractional coordinates of the full cell (wrapped into [0,1))."""
        f = torch.as_tensor(self.frac_map, dtype=values.dtype)
        f0 = torch.as_tensor(self.frac_offset, dtype=values.dtype)
        return torch.remainder(torch.einsum("nip,...p->...ni", f, values) + f0, 1.0)

    def occupancies(self, values: Tensor) -> Tensor:
        o = torch.as_tensor(self.occ_map, dtype=values.dtype)
        return torch.einsum("np,...p->...n", o, values) + torch.as_tensor(self.occ_offset, dtype=values.dtype)

    def b_iso(self, values: Tensor) -> Tensor:
        return torch.einsum("np,...p->...n", torch.as_tensor(self.b_map, dtype=values.dtype), values)

    def site_xyz(self, values: np.ndarray) -> np.ndarray:
        """(S,3) representative coordinates of the asymmetric-unit sites for parameter vector ``values``."""
        idx = self.block("xyz")
        out = []
        k = 0
        for site in self.sites:
            n = site.n_free_xyz
            p = values[idx[k : k + n]] if n else np.zeros(0)
            out.append(site.x0 + site.basis @ p)
            k += n
        return np.asarray(out).reshape(-1, 3)

    def to_structure(self, values: np.ndarray | None = None) -> Structure:
        """The full-cell Structure for a parameter vector (default: the starting values)."""
        v = torch.as_tensor(self.values if values is None else values, dtype=torch.float64)
        lat = self.lattice_matrix(v).numpy()
        frac = self.frac(v).numpy()
        occ = self.occupancies(v).numpy()
        b = self.b_iso(v).numpy()
        species, coords, labels, bs = [], [], [], []
        # merge mixed-site entries back into one pymatgen site
        for s_idx, site in enumerate(self.sites):
            entries = [n for n in range(self.n_atoms) if self.atom_site[n] == s_idx]
            m = site.multiplicity
            for j in range(m):
                comp: dict[str, float] = {}
                for n in entries[j::m]:
                    comp[self.atom_species[n]] = comp.get(self.atom_species[n], 0.0) + float(max(occ[n], 0.0))
                species.append(comp)
                coords.append(frac[entries[j]])
                labels.append(site.label)
                bs.append(float(b[entries[j]]))
        return Structure(
            Lattice(lat),
            species,
            coords,
            labels=labels,
            site_properties={"b_iso": bs},
            coords_are_cartesian=False,
        )


# ------------------------------------------------------------------------------------------------ builder
def parameterize(
    structure: Structure, name: str | None = None, symprec: float = _SYMPREC
) -> PhaseParameterization:
    """Build the symmetry-constrained parameterisation of ``structure`` in its own setting.

    Symmetry comes from spglib on the input cell (so the operations are expressed in the input basis);
    occupancy-disordered sites are typed by their full composition so mixed sites are kept together.
    Raises :class:`StructureError` for a structure without atoms.
    """
    if len(structure) == 0:
        raise StructureError("structure has no atoms")
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    frac_in = np.asarray(structure.frac_coords, dtype=float)
    comps = [site.species for site in structure]
    keys = [tuple(sorted((str(sp), round(float(o), 6)) for sp, o in c.items())) for c in comps]
    type_ids = {k: i + 1 for i, k in enumerate(dict.fromkeys(keys))}
    numbers = [type_ids[k] for k in keys]
    cell = (lattice.tolist(), frac_in.tolist(), numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if dataset is None:
        rots = np.eye(3, dtype=int)[None]
        trans = np.zeros((1, 3))
        equiv = np.arange(len(structure))
        wyckoffs = ["a"] * len(structure)
        sg_symbol, sg_number = "P1", 1
    else:
        rots = np.asarray(dataset.rotations)
        trans = np.asarray(dataset.translations)
        equiv = np.asarray(dataset.equivalent_atoms)
        wyckoffs = list(dataset.wyckoffs)
        sg_symbol, sg_number = str(dataset.international), int(dataset.number)

    # lattice: metric tensors invariant under every rotation (in the fractional basis of the input cell)
    constraint_rows = []
    for r in rots:
        for basis_idx in range(6):
            e = np.zeros(6)
            e[basis_idx] = 1.0
            g = _vec_to_sym(e)
            constraint_rows.append(_sym_to_vec(r.T @ g @ r - g))
    cmat = np.asarray(constraint_rows).reshape(len(rots), 6, 6).transpose(0, 2, 1).reshape(-1, 6)
    _, s, vt = np.linalg.svd(cmat)
    null = vt[int((s > 1e-8).sum()) :].T  # (6,k) invariant subspace
    proj = null @ null.T
    lat_basis, lat_piv = _column_basis(proj)
    metric0 = lattice @ lattice.T
    g0 = _sym_to_vec(metric0)
    lat_vals = g0[lat_piv]
    metric_basis = np.asarray([_vec_to_sym(lat_basis[:, k]) for k in range(lat_basis.shape[1])])

    # sites
    sites: list[SiteParameterization] = []
    labels = (
        list(structure.labels)
        if hasattr(structure, "labels")
        else [f"{s.specie}{i}" for i, s in enumerate(structure)]
    )
    bvals = site_b_iso(structure)
    for rep in dict.fromkeys(int(e) for e in equiv):
        x = frac_in[rep]
        members = [int(i) for i in np.nonzero(equiv == rep)[0]]
        stab = []
        for r, t in zip(rots, trans, strict=True):
            d = r @ x + t - x
            if np.all(np.abs(d - np.round(d)) < 10 * symprec):
                stab.append(r)
        proj_site = np.mean(np.asarray(stab, dtype=float), axis=0) if stab else np.eye(3)
        basis, pivots = _column_basis(proj_site)
        # symmetrise the representative onto its special position: x ← x0 with x0 invariant under stab
        ops_r: list[np.ndarray] = []
        ops_t: list[np.ndarray] = []
        found: list[np.ndarray] = []
        for r, t in zip(rots, trans, strict=True):
            y = r @ x + t
            if any(np.all(np.abs((y - z) - np.round(y - z)) < 10 * symprec) for z in found):
                continue
            found.append(y)
            ops_r.append(r)
            ops_t.append(t)
        if len(found) != len(members):
            log.warning(
                "site %s: orbit has %d positions but the structure has %d equivalent sites",
                labels[rep],
                len(found),
                len(members),
            )
        # project x onto the special position: average of stabiliser images
        if stab:
            imgs = []
            for r, t in zip(rots, trans, strict=True):
                y = r @ x + t
                d = y - x
                if np.all(np.abs(d - np.round(d)) < 10 * symprec):
                    imgs.append(y - np.round(d))
            x_sym = np.mean(imgs, axis=0)
        else:
            x_sym = x
        x0 = x_sym - basis @ x_sym[pivots] if pivots else x_sym
        comp = comps[rep]
        species = tuple(str(sp) for sp in comp)
        occ = tuple(float(o) for o in comp.values())
        sites.append(
            SiteParameterization(
                label=str(labels[rep]),
                wyckoff=f"{len(found)}{wyckoffs[rep]}",
                species=species,
                occupancy=occ,
                x0=x0,
                basis=basis,
                pivots=pivots,
                ops_rot=np.asarray(ops_r, dtype=float),
                ops_trans=np.asarray(ops_t, dtype=float),
                b_iso=float(bvals[rep]),
                site_indices=members,
                x_start=x_sym,
            )
        )

    # parameter vector
    names: list[str] = []
    kinds: list[str] = []
    vals: list[float] = []
    gnames = ("G11", "G22", "G33", "G23", "G13", "G12")
    for k, p in enumerate(lat_piv):
        names.append(f"lattice.{gnames[p]}")
        kinds.append("lattice")
        vals.append(float(lat_vals[k]))
    xyz_start = len(vals)
    for site in sites:
        for p in site.pivots:
            names.append(f"{site.label}.{'xyz'[p]}")
            kinds.append("xyz")
            vals.append(float(site.x_start[p]))
    occ_start = len(vals)
    for site in sites:
        if site.is_mixed:
            for sp, o in zip(site.species[:-1], site.occupancy[:-1], strict=True):
                names.append(f"{site.label}.occ.{sp}")
                kinds.append("occ")
                vals.append(o)
    b_start = len(vals)
    for site in sites:
        names.append(f"{site.label}.B_iso")
        kinds.append("biso")
        vals.append(site.b_iso)
    n_par = len(vals)

    # affine maps for atom entries (one entry per species per orbit position)
    frac_map_l, frac_off_l, occ_map_l, occ_off_l, b_map_l = [], [], [], [], []
    atom_species: list[str] = []
    atom_site: list[int] = []
    xyz_k = xyz_start
    occ_k = occ_start
    for s_i, site in enumerate(sites):
        n_free = site.n_free_xyz
        total = float(sum(site.occupancy))
        for sp_i, sp in enumerate(site.species):
            for r, t in zip(site.ops_rot, site.ops_trans, strict=True):
                fm = np.zeros((3, n_par))
                fm[:, xyz_k : xyz_k + n_free] = r @ site.basis
                frac_map_l.append(fm)
                frac_off_l.append(r @ site.x0 + t)
                om = np.zeros(n_par)
                oo = 0.0
                if site.is_mixed:
                    if sp_i < len(site.species) - 1:
                        om[occ_k + sp_i] = 1.0
                    else:
                        oo = total
                        om[occ_k : occ_k + len(site.species) - 1] = -1.0
                else:
                    oo = site.occupancy[0]
                occ_map_l.append(om)
                occ_off_l.append(oo)
                bm = np.zeros(n_par)
                bm[b_start + s_i] = 1.0
                b_map_l.append(bm)
                atom_species.append(sp)
                atom_site.append(s_i)
        xyz_k += n_free
        if site.is_mixed:
            occ_k += len(site.species) - 1

    system = _crystal_system(sg_number)
    return PhaseParameterization(
        name=name or structure.composition.reduced_formula,
        formula=structure.composition.reduced_formula,
        spacegroup_symbol=sg_symbol,
        spacegroup_number=sg_number,
        crystal_system=system,
        metric_basis=metric_basis,
        sites=sites,
        values=np.asarray(vals, dtype=float),
        names=names,
        kinds=kinds,
        frac_map=np.asarray(frac_map_l),
        frac_offset=np.asarray(frac_off_l),
        occ_map=np.asarray(occ_map_l),
        occ_offset=np.asarray(occ_off_l),
        b_map=np.asarray(b_map_l),
        atom_species=atom_species,
        atom_site=atom_site,
        symops_rot=np.asarray(rots, dtype=float),
        symops_trans=np.asarray(trans, dtype=float),
    )


def _crystal_system(number: int) -> str:
    for upper, name in (
        (2, "triclinic"),
        (15, "monoclinic"),
        (74, "orthorhombic"),
        (142, "tetragonal"),
        (167, "trigonal"),
        (194, "hexagonal"),
        (230, "cubic"),
    ):
        if number <= upper:
            return name
    return "unknown"


# ------------------------------------------------------------------------------------------------ batching
@dataclass
class StackedPhases:
    """Padded tensors of B parameterisations (one phase per candidate) — every map linear in the parameters.

    Shapes: metric_basis (B,L,3,3), frac_map (B,N,3,P), frac_offset (B,N,3), occ_map (B,N,P),
    occ_offset (B,N), b_map (B,N,P), mask (B,N) bool, param_mask (B,P) bool (False = padding),
    values (B,P) starting values, kinds (B,P) list of lists.
    """

    phases: list[PhaseParameterization]
    lat_index: Tensor  # (B,L) long index into P of the lattice params (padded with 0, lat_mask)
    lat_mask: Tensor
    metric_basis: Tensor
    frac_map: Tensor
    frac_offset: Tensor
    occ_map: Tensor
    occ_offset: Tensor
    b_map: Tensor
    mask: Tensor
    param_mask: Tensor
    values: Tensor

    def select(self, index: Tensor) -> StackedPhases:
        """Rows ``index`` (B',) of every tensor (candidates may repeat, e.g. for batched Jacobians)."""
        return StackedPhases(
            [self.phases[int(i)] for i in index],
            self.lat_index[index],
            self.lat_mask[index],
            self.metric_basis[index],
            self.frac_map[index],
            self.frac_offset[index],
            self.occ_map[index],
            self.occ_offset[index],
            self.b_map[index],
            self.mask[index],
            self.param_mask[index],
            self.values[index],
        )

    def lattice(self, theta: Tensor) -> Tensor:
        lat = torch.gather(theta, 1, self.lat_index) * self.lat_mask
        return lattice_from_metric(torch.einsum("bk,bkij->bij", lat, self.metric_basis))

    def frac(self, theta: Tensor) -> Tensor:
        return torch.remainder(torch.einsum("bnip,bp->bni", self.frac_map, theta) + self.frac_offset, 1.0)

    def occupancies(self, theta: Tensor) -> Tensor:
        return torch.einsum("bnp,bp->bn", self.occ_map, theta) + self.occ_offset

    def b_iso(self, theta: Tensor) -> Tensor:
        return torch.einsum("bnp,bp->bn", self.b_map, theta)


def stack_parameterizations(
    phases: Sequence[PhaseParameterization], dtype: torch.dtype = torch.float64
) -> StackedPhases:
    """Pad and stack parameterisations of B candidate structures into tensors (see :class:`StackedPhases`)."""
    bsz = len(phases)
    n_max = max(p.n_atoms for p in phases)
    p_max = max(p.n_params for p in phases)
    l_max = max(len(p.block("lattice")) for p in phases)
    lat_index = torch.zeros(bsz, l_max, dtype=torch.long)
    lat_mask = torch.zeros(bsz, l_max, dtype=dtype)
    metric_basis = torch.zeros(bsz, l_max, 3, 3, dtype=dtype)
    frac_map = torch.zeros(bsz, n_max, 3, p_max, dtype=dtype)
    frac_offset = torch.zeros(bsz, n_max, 3, dtype=dtype)
    occ_map = torch.zeros(bsz, n_max, p_max, dtype=dtype)
    occ_offset = torch.zeros(bsz, n_max, dtype=dtype)
    b_map = torch.zeros(bsz, n_max, p_max, dtype=dtype)
    mask = torch.zeros(bsz, n_max, dtype=torch.bool)
    param_mask = torch.zeros(bsz, p_max, dtype=torch.bool)
    values = torch.zeros(bsz, p_max, dtype=dtype)
    for i, ph in enumerate(phases):
        li = ph.block("lattice")
        lat_index[i, : len(li)] = torch.as_tensor(li)
        lat_mask[i, : len(li)] = 1.0
        metric_basis[i, : len(li)] = torch.as_tensor(ph.metric_basis, dtype=dtype)
        n, p = ph.n_atoms, ph.n_params
        frac_map[i, :n, :, :p] = torch.as_tensor(ph.frac_map, dtype=dtype)
        frac_offset[i, :n] = torch.as_tensor(ph.frac_offset, dtype=dtype)
        occ_map[i, :n, :p] = torch.as_tensor(ph.occ_map, dtype=dtype)
        occ_offset[i, :n] = torch.as_tensor(ph.occ_offset, dtype=dtype)
        b_map[i, :n, :p] = torch.as_tensor(ph.b_map, dtype=dtype)
        mask[i, :n] = True
        param_mask[i, :p] = True
        values[i, :p] = torch.as_tensor(ph.values, dtype=dtype)
    return StackedPhases(
        list(phases),
        lat_index,
        lat_mask,
        metric_basis,
        frac_map,
        frac_offset,
        occ_map,
        occ_offset,
        b_map,
        mask,
        param_mask,
        values,
    )
