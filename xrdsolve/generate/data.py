"""Training structures: the shared CSV splits (IDs kept) and a stream of symmetry-aware random crystals.

The CSV sets live in ``../shared/data/structures`` (CDVAE format: one CIF string per row). Random crystals
come from pyxtal with space groups drawn from the frequencies of real inorganic crystals, charge-balanced
(or intermetallic) compositions and a minimum-distance check.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Element, Structure

from xrdsolve.errors import XrdsolveError

log = logging.getLogger(__name__)

#: Largest number of atoms per cell the generator handles.
MAX_ATOMS = 64
#: Element vocabulary: atomic numbers 1..MAX_Z (index = Z; 0 is padding).
MAX_Z = 100

#: The CSV files per set; "val" rows of MP-20 are the validation split, "test" rows are never trained on.
SETS = {
    "mp20": "mp20_subset",
    "perov_5": "perov_5",
    "carbon_24": "carbon_24",
}


class DataError(XrdsolveError):
    """Training or evaluation data missing or malformed."""


def shared_structure_dir() -> Path:
    """The directory of the shared structure sets (``$XRDSOLVE_SHARED_DATA/structures``)."""
    env = os.environ.get("XRDSOLVE_SHARED_DATA")
    if env:
        return Path(env) / "structures"
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data" / "structures"
        if cand.is_dir():
            return cand
    return Path("/work/shared/data/structures")


@dataclass(frozen=True)
class StructureRecord:
    """One training/evaluation structure with its provenance (``source`` set, split and ID)."""

    id: str
    source: str
    structure: Structure


def load_split(
    name: str, split: str, limit: int | None = None, root: Path | None = None
) -> list[StructureRecord]:
    """Read ``name`` (mp20, perov_5, carbon_24) split ``split`` (train/val/test); keeps material IDs.

    Structures with more than :data:`MAX_ATOMS` sites or partial occupancies are skipped.
    """
    if name not in SETS:
        raise DataError(f"unknown structure set {name!r}; expected one of {sorted(SETS)}")
    path = (root or shared_structure_dir()) / SETS[name] / f"{split}.csv"
    if not path.is_file():
        raise DataError(f"structure split not found: {path}")
    csv.field_size_limit(1 << 28)
    out: list[StructureRecord] = []
    with path.open(newline="") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in csv.DictReader(fh):
            s = Structure.from_str(row["cif"], fmt="cif")
            if len(s) > MAX_ATOMS or not s.is_ordered:
                continue
            out.append(StructureRecord(id=str(row["material_id"]), source=f"{name}/{split}", structure=s))
            if limit is not None and len(out) >= limit:
                break
    log.info("loaded %d structures from %s", len(out), path)
    return out


def spacegroup_frequencies(root: Path | None = None) -> dict[int, float]:
    """Space-group frequencies (normalised) of the MP-20 training rows, a proxy for real inorganic crystals."""
    path = (root or shared_structure_dir()) / SETS["mp20"] / "train.csv"
    counts = np.ones(231)  # add-one smoothing so every group can appear
    counts[0] = 0
    csv.field_size_limit(1 << 28)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            counts[int(row["spacegroup.number"])] += 20.0
    counts /= counts.sum()
    return {i: float(counts[i]) for i in range(1, 231)}


# -- random compositions ---------------------------------------------------------------------------------
_ANIONS = ("O", "O", "O", "S", "Se", "F", "Cl", "Br", "I", "N", "P", "Te", "As", "Sb", "H")
_METALS = tuple(
    e.symbol
    for e in Element
    if (e.is_metal or e.is_metalloid) and e.Z <= 83 and not e.is_noble_gas and e.symbol not in ("Tc", "Pm")
)


def _oxidation_states(symbol: str) -> list[int]:
    states = [s for s in Element(symbol).common_oxidation_states if s != 0]
    return states or [s for s in Element(symbol).oxidation_states if s != 0] or [2]


def random_composition(rng: np.random.Generator, max_atoms: int = 20) -> Composition:
    """A random composition: charge-balanced ionic (≈ 70 %) or intermetallic, ≤ ``max_atoms`` per formula."""
    for _ in range(200):
        if rng.random() < 0.3:
            k = int(rng.choice([1, 2, 3], p=[0.15, 0.55, 0.30]))
            els = list(rng.choice(_METALS, size=k, replace=False))
            counts = rng.integers(1, 4, size=k)
            comp = Composition(dict(zip(els, counts.tolist(), strict=True)))
        else:
            anion = str(rng.choice(_ANIONS))
            n_cat = int(rng.choice([1, 2], p=[0.55, 0.45]))
            cats = [str(c) for c in rng.choice(_METALS, size=n_cat, replace=False)]
            a_ox = min(_oxidation_states(anion))
            if a_ox >= 0:
                continue
            c_ox = [
                max(_oxidation_states(c)) if rng.random() < 0.5 else int(rng.choice(_oxidation_states(c)))
                for c in cats
            ]
            if any(o <= 0 for o in c_ox):
                continue
            cat_counts = rng.integers(1, 3, size=n_cat)
            charge = int(np.dot(cat_counts, c_ox))
            if charge % (-a_ox) != 0:
                cat_counts = cat_counts * (-a_ox)
                charge = int(np.dot(cat_counts, c_ox))
            n_an = charge // (-a_ox)
            amounts = dict(zip(cats, cat_counts.tolist(), strict=True))
            amounts[anion] = n_an
            comp = Composition(amounts)
        comp = comp.reduced_composition
        if 1 <= comp.num_atoms <= max_atoms:
            return comp
    return Composition("NaCl")


_CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}


_GROUPS: dict[int, object] = {}
_COMPAT: dict[tuple[int, tuple[int, ...]], bool] = {}


def _group(sg: int) -> object:
    from pyxtal.symmetry import Group

    if sg not in _GROUPS:
        _GROUPS[sg] = Group(sg)
    return _GROUPS[sg]


def _compatible(sg: int, counts: tuple[int, ...]) -> bool:
    key = (sg, counts)
    if key not in _COMPAT:
        try:
            _COMPAT[key] = bool(_group(sg).check_compatible(list(counts))[0])  # type: ignore[attr-defined]
        except Exception:  # pyxtal raises on exotic inputs
            _COMPAT[key] = False
    return _COMPAT[key]


def random_crystal(
    rng: np.random.Generator,
    composition: Composition | None = None,
    n_atoms: int | None = None,
    spacegroup: int | None = None,
    sg_freq: dict[int, float] | None = None,
    max_atoms: int = 20,
    attempts: int = 6,
    min_distance: float = 0.7,
) -> Structure | None:
    """A symmetric random crystal (pyxtal) as a primitive pymatgen Structure, or None when none fits.

    ``composition`` is the formula; ``n_atoms`` the atoms in the primitive cell (default: a small Z).
    The space group is drawn from ``sg_freq`` (default uniform) among the groups whose Wyckoff positions
    can hold the atoms (conventional cell = primitive content × centring multiplicity), unless
    ``spacegroup`` is given.
    """
    from pyxtal import pyxtal

    comp = composition or random_composition(rng, max_atoms=max_atoms)
    formula = comp.reduced_composition
    if n_atoms is None:
        z_max = max(1, max_atoms // int(formula.num_atoms))
        z = int(rng.integers(1, min(z_max, 4) + 1))
    else:
        z = max(1, round(n_atoms / formula.num_atoms))
    species = [str(e) for e in formula.elements]
    base = [int(formula[e]) * z for e in formula.elements]
    if spacegroup is not None:
        groups = [int(spacegroup)]
    else:
        groups = [
            g for g in range(1, 231)
            if _compatible(g, tuple(b * _CENTRING.get(_group(g).symbol[0], 1) for b in base))  # type: ignore[attr-defined]
        ]  # fmt: skip
    if not groups:
        return None
    p = np.array([(sg_freq or {}).get(g, 1.0) for g in groups])
    p /= p.sum()
    for _ in range(attempts):
        sg = int(rng.choice(groups, p=p))
        mult = _CENTRING.get(_group(sg).symbol[0], 1)  # type: ignore[attr-defined]
        num = [b * mult for b in base]
        xtal = pyxtal()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                xtal.from_random(
                    3, sg, species, num, factor=1.1, seed=int(rng.integers(1 << 31)), max_count=20
                )
        except Exception:  # pyxtal raises assorted errors for incompatible Wyckoff combinations
            continue
        if not xtal.valid:
            continue
        try:
            s = xtal.to_pymatgen().get_primitive_structure()
        except Exception:
            continue
        if len(s) != sum(base) or len(s) > MAX_ATOMS:
            continue
        d = s.distance_matrix + np.eye(len(s)) * 10.0
        if len(s) > 1 and d.min() < min_distance:
            continue
        return s
    return None


def random_stream(
    seed: int, max_atoms: int = 20, sg_freq: dict[int, float] | None = None
) -> Iterator[Structure]:
    """An endless stream of random crystals (see :func:`random_crystal`)."""
    rng = np.random.default_rng(seed)
    freq = sg_freq if sg_freq is not None else spacegroup_frequencies()
    while True:
        s = random_crystal(rng, sg_freq=freq, max_atoms=max_atoms)
        if s is not None:
            yield s


def element_counts(structures: Sequence[Structure]) -> np.ndarray:
    """Histogram of atomic numbers over ``structures`` (length MAX_Z + 1)."""
    out = np.zeros(MAX_Z + 1)
    for s in structures:
        for site in s:
            out[min(site.specie.Z, MAX_Z)] += 1
    return out


def write_random_pool(path: Path, n: int, seed: int, max_atoms: int = 20) -> int:
    """Append ``n`` random crystals to a JSON-lines file (``{"id", "cif"}`` per line); returns the count."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    stream = random_stream(seed, max_atoms=max_atoms)
    with path.open("a") as fh:
        for i in range(n):
            s = next(stream)
            fh.write(json.dumps({"id": f"pyxtal-{seed}-{i}", "cif": s.to(fmt="cif")}) + "\n")
            fh.flush()
    return n


def load_random_pool(path: Path, limit: int | None = None) -> list[StructureRecord]:
    """Read a pool written by :func:`write_random_pool`."""
    import json

    out: list[StructureRecord] = []
    if not path.is_file():
        return out
    with path.open() as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a partially written last line
                continue
            out.append(StructureRecord(row["id"], "pyxtal", Structure.from_str(row["cif"], fmt="cif")))
            if limit is not None and len(out) >= limit:
                break
    return out
