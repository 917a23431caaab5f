"""Compositions given by users: parsing, formula units per cell (Z) and volume estimates.

Volumes are in Å³. A formula unit's volume is the sum of per-element volumes fitted to the MP-20
training rows (``data/recipes/fit_atomic_volumes.py``; median error 6 % on those cells), with an
atomic-radius estimate for elements not in that table. It ranks Z values and sanity-checks cells;
it is never a hard constraint.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from pymatgen.core import Composition, Element

from .errors import UsageError

#: Volume per atom in inorganic crystals, Å³ (fitted by data/recipes/fit_atomic_volumes.py).
ELEMENT_VOLUMES: dict[str, float] = {
    "Ac": 40.0, "Ag": 22.6, "Al": 16.2, "As": 22.6, "Au": 18.8, "B": 6.5, "Ba": 38.9, "Be": 7.6, "Bi":
    31.5, "Br": 37.9, "C": 8.7, "Ca": 26.9, "Cd": 24.6, "Ce": 27.3, "Cl": 27.8, "Co": 10.1, "Cr": 10.7,
    "Cs": 50.7, "Cu": 11.7, "Dy": 29.0, "Er": 25.5, "Eu": 29.4, "F": 11.2, "Fe": 10.3, "Ga": 17.2, "Gd":
    26.8, "Ge": 17.8, "H": 4.9, "Hf": 19.8, "Hg": 26.7, "Ho": 26.7, "I": 52.1, "In": 26.5, "Ir": 14.1,
    "K": 37.6, "La": 30.4, "Li": 11.1, "Lu": 26.2, "Mg": 22.0, "Mn": 12.5, "Mo": 16.9, "N": 7.1, "Na":
    21.5, "Nb": 17.3, "Nd": 29.2, "Ni": 10.1, "O": 7.9, "Os": 14.6, "P": 16.8, "Pa": 24.9, "Pb": 31.1,
    "Pd": 15.4, "Pm": 32.0, "Pr": 31.9, "Pt": 15.1, "Rb": 50.2, "Re": 15.8, "Rh": 13.0, "Ru": 13.4, "S":
    22.0, "Sb": 27.9, "Sc": 20.5, "Se": 27.6, "Si": 15.5, "Sm": 29.9, "Sn": 25.4, "Sr": 31.3, "Ta":
    17.7, "Tb": 26.8, "Tc": 13.5, "Te": 37.3, "Th": 30.9, "Ti": 13.4, "Tl": 32.4, "Tm": 25.5, "U": 21.3,
    "V": 14.1, "W": 21.1, "Y": 25.8, "Yb": 27.6, "Zn": 16.4, "Zr": 20.5
}  # fmt: skip
#: Typical packing fraction of inorganic crystals (ratio of atomic-sphere volume to cell volume).
PACKING_FRACTION = 0.65
#: Most atoms a candidate cell may hold (the generator and the random baseline work up to this).
MAX_ATOMS_PER_CELL = 64


def parse_composition(text: str | Composition) -> Composition:
    """Parse a formula such as ``Fe2O3``, ``LiNiO2`` or ``(Mn,Fe)3O4`` into a pymatgen Composition.

    ``(A,B)n`` is read as an equal mixture of A and B on the same sites. Raises :class:`UsageError`
    with the offending text when the formula cannot be read.
    """
    if isinstance(text, Composition):
        comp = text
    else:
        formula = text.strip()
        if not formula:
            raise UsageError("empty composition")
        formula = _expand_mixed_groups(formula)
        try:
            comp = Composition(formula)
        except (ValueError, KeyError) as exc:
            raise UsageError(f"cannot read composition {text!r}: {exc}") from None
    if comp.num_atoms <= 0:
        raise UsageError(f"composition {text!r} has no atoms")
    for el in comp.elements:
        if not isinstance(el, Element):
            raise UsageError(f"composition {text!r}: unknown element {el!s}")
    return comp


def _expand_mixed_groups(formula: str) -> str:
    """Turn ``(Mn,Fe)3O4`` into ``Mn1.5Fe1.5O4`` (equal shares of a comma-separated group)."""

    def repl(match: re.Match[str]) -> str:
        members = [m.strip() for m in match.group(1).split(",") if m.strip()]
        count = float(match.group(2) or 1)
        share = count / len(members)
        return "".join(f"{m}{share:g}" for m in members)

    return re.sub(r"\(([A-Za-z]+(?:\s*,\s*[A-Za-z]+)+)\)(\d*\.?\d*)", repl, formula)


def parse_elements(text: str | Sequence[str]) -> list[Element]:
    """Parse ``"Li,Mn,O"`` (or a list of symbols) into elements; raises :class:`UsageError`."""
    symbols = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not symbols:
        raise UsageError("no elements given")
    out = []
    for sym in symbols:
        try:
            out.append(Element(sym))
        except ValueError:
            raise UsageError(f"unknown element {sym!r} in {text!r}") from None
    return out


def reduced_formula_and_units(comp: Composition) -> tuple[Composition, int]:
    """The smallest integer formula unit and how many of them ``comp`` holds.

    Non-integer compositions (``Li0.6CoO2``) are returned unchanged with 1 unit.
    """
    amounts = list(comp.get_el_amt_dict().values())
    if all(abs(a - round(a)) < 1e-6 for a in amounts):
        reduced, units = comp.get_reduced_composition_and_factor()
        return reduced, round(units)
    return comp, 1


@functools.lru_cache(maxsize=256)
def atomic_radius(symbol: str) -> float:
    """pymatgen's empirical atomic radius of an element, Å (else its calculated radius, else 1.5 Å)."""
    element = Element(symbol)
    return float(element.atomic_radius or element.atomic_radius_calculated or 1.5)


def atomic_volume(element: Element) -> float:
    """Typical space taken by one atom in a crystal, Å³ (fitted table, else radius sphere / packing)."""
    if element.symbol in ELEMENT_VOLUMES:
        return ELEMENT_VOLUMES[element.symbol]
    return 4.0 / 3.0 * math.pi * atomic_radius(element.symbol) ** 3 / PACKING_FRACTION


#: Largest |ln(cell volume / (Z × estimated volume per formula))| for which Z formula units fit a cell.
Z_VOLUME_TOLERANCE = 0.3
#: Smallest cell volume per atom, as a fraction of the estimate (:func:`estimated_volume_per_formula`), that a
#: crystal takes. The densest known structures sit well above it: ln(fraction) is −0.26 at least in MP-20
#: train (847 rows), −0.45 in perov_5 and −0.47 (diamond-like carbon, 0.62) in carbon_24 val and test; ln 0.55
#: is −0.60. Denser candidates are impossible whatever their fit: two Mg3MnTe4 units in its 136 Å³ sub-cell
#: (0.30 of the estimate) ranked first by Rwp, with half its Mg atoms at B 30 Å² and the rest at −1 Å².
MIN_VOLUME_FRACTION = 0.55


def estimated_volume_per_formula(comp: Composition) -> float:
    """Estimated cell volume taken by one formula unit of ``comp``, Å³."""
    return sum(amt * atomic_volume(Element(el.symbol)) for el, amt in comp.items())


def z_candidates(
    comp: Composition,
    cell_volume: float | None = None,
    *,
    max_atoms: int = MAX_ATOMS_PER_CELL,
    max_z: int = 16,
    tolerance: float = Z_VOLUME_TOLERANCE,
) -> list[int]:
    """Formula units per cell worth trying, most plausible first.

    With a cell volume (Å³, e.g. from indexing) only Z whose estimated volume is within
    ``tolerance`` (relative, log scale) of it are kept, or when none is, the two nearest; never a Z that
    would pack the cell denser than MIN_VOLUME_FRACTION of the estimate allows (so none for a cell too
    small for one formula unit). Without a volume every Z with at most ``max_atoms`` atoms is returned,
    small Z first. The formula is reduced first, so ``Ti2O4`` and ``TiO2`` agree.
    """
    reduced, _ = reduced_formula_and_units(comp)
    atoms_per_unit = reduced.num_atoms
    zs = [z for z in range(1, max_z + 1) if z * atoms_per_unit <= max_atoms + 1e-9]
    if not zs:
        raise UsageError(
            f"one formula unit of {reduced.formula} has {atoms_per_unit:g} atoms, more than the "
            f"{max_atoms} a candidate cell may hold"
        )
    if cell_volume is None:
        return zs
    v_fu = estimated_volume_per_formula(reduced)
    roomy = [z for z in zs if cell_volume >= MIN_VOLUME_FRACTION * z * v_fu]
    scored = sorted(roomy, key=lambda z: abs(math.log(cell_volume / (z * v_fu))))
    kept = [z for z in scored if abs(math.log(cell_volume / (z * v_fu))) <= tolerance]
    return kept or scored[:2]


#: Elements that take a negative oxidation state in the compounds we solve (their presence asks for
#: charge balance; a set of metals alone is taken as an intermetallic, with no charge check).
ANION_FORMERS = frozenset({"H", "B", "C", "N", "O", "F", "P", "S", "Cl", "As", "Se", "Br", "Sb", "Te", "I"})


#: Closest approach of two full-charge anions (O²⁻–O²⁻, F⁻–Cl⁻ …), as a fraction of the sum of their ionic
#: radii (pymatgen's Shannon crystal radii: O²⁻ 1.26 Å, Se²⁻ 1.84 Å); covalent radii alone allow O–O at
#: 0.92 Å. Of the 398 MP-20 training rows whose likeliest oxidation states give an anion its full charge,
#: 2 have a closer pair (AgHO2 0.51, the Se dimer of NbSeI3 0.64), 3 below 0.75, 5 below 0.85. Measured on the
#: 100 benchmark patterns (``xrdsolve bench solve``, generator arm): 0.68 / 0.76 against 0.67 / 0.75 without
#: (Rb3LuO3 found, YbF3 rank 2 → 1); with 0.75, 0.69 / 0.75 (Rb3LuO3 and Li3P2WO8 found, HoWClO4 lost).
ANION_CONTACT_FRACTION = 0.65


def anion_radii(composition: Composition) -> dict[str, float]:
    """Ionic radius (Å) of each element of ``composition`` that its likeliest oxidation-state assignment
    (pymatgen's ``oxi_state_guesses``) makes a full-charge anion: charge equal to the element's most
    negative common oxidation state (O²⁻, F⁻, Se²⁻; not S⁻ in a polysulfide, not Si⁴⁻ in an intermetallic,
    which has no tabulated radius). Empty when no assignment balances. Cached per reduced formula (the
    prescreen asks once per cell and Z; the guess takes up to 30 ms)."""
    return dict(_full_charge_anions(composition.reduced_formula))


@functools.lru_cache(maxsize=256)
def _full_charge_anions(reduced_formula: str) -> tuple[tuple[str, float], ...]:
    """(element, ionic radius Å) of the full-charge anions of a reduced formula (:func:`anion_radii`)."""
    from pymatgen.core import Species

    try:
        guesses = Composition(reduced_formula).oxi_state_guesses(max_sites=-50)
    except ValueError:
        return ()
    if not guesses:
        return ()
    out: list[tuple[str, float]] = []
    for symbol, charge in guesses[0].items():
        negative = [q for q in Element(symbol).common_oxidation_states if q < 0]
        if charge >= 0 or not negative or abs(charge - min(negative)) > 1e-6:
            continue
        try:
            with warnings.catch_warnings():  # pymatgen warns for an ion it has no radius for (C⁴⁻)
                warnings.simplefilter("ignore")
                radius = Species(symbol, round(charge)).ionic_radius
        except (ValueError, KeyError):
            radius = None
        if radius:
            out.append((symbol, float(radius)))
    return tuple(out)


@dataclass(frozen=True)
class CompositionProposal:
    """A cell content proposed from a list of elements: reduced formula, Z and how well it fits.

    ``volume_misfit`` is |ln(cell volume / estimated volume)|; ``oxidation_states`` one charge-
    balanced assignment (empty for intermetallics)."""

    formula: Composition
    z: int
    volume_misfit: float
    oxidation_states: dict[str, float]

    @property
    def cell_content(self) -> Composition:
        return self.formula * self.z

    def summary(self) -> dict[str, object]:
        return {
            "formula": self.formula.reduced_formula,
            "z": self.z,
            "volume_misfit": round(self.volume_misfit, 4),
            "oxidation_states": self.oxidation_states,
        }


@functools.lru_cache(maxsize=4096)
def _charge_totals(symbol: str, n: int) -> frozenset[int]:
    """Total charges ``n`` atoms of ``symbol`` can carry, each in one of its common oxidation states
    (negative ones only for anion formers)."""
    el = Element(symbol)
    states = set(el.common_oxidation_states) or set(el.oxidation_states) or {0}
    if symbol in ANION_FORMERS:
        states = {q for q in states if q < 0} or states
    totals = set(states)
    for _ in range(n - 1):
        totals = {t + q for t in totals for q in states}
    return frozenset(totals)


def _charge_balance(counts: dict[str, int]) -> dict[str, float] | None:
    """Mean oxidation state per element for a charge-balanced cell content, each atom taking one of
    its element's common states (mixed valence allowed, as Fe²⁺/Fe³⁺ in Fe3O4), single-valence
    assignments preferred; None when no assignment sums to zero or there is no cation–anion pair."""
    symbols = list(counts)
    sets = [_charge_totals(s, counts[s]) for s in symbols]
    # suffix sums: which totals the remaining elements can still reach
    suffix: list[frozenset[int]] = [frozenset({0})]
    for tot in reversed(sets):
        suffix.insert(0, frozenset(a + b for a in tot for b in suffix[0]))
    if 0 not in suffix[0]:
        return None
    chosen: list[int] = []
    need = 0
    for i, tot in enumerate(sets):
        n = counts[symbols[i]]
        # prefer totals that are a whole multiple of n (one valence), smallest |charge| first
        options = sorted(tot, key=lambda t: (t % n != 0, abs(t)))
        pick = next(t for t in options if need - t in suffix[i + 1])
        chosen.append(pick)
        need -= pick
    means = {s: round(t / counts[s], 3) for s, t in zip(symbols, chosen, strict=True)}
    if not (any(q < 0 for q in means.values()) and any(q > 0 for q in means.values())):
        return None
    return means


#: Formula units per cell common in inorganic crystals; other Z values are ranked after them.
COMMON_Z = frozenset({1, 2, 3, 4, 6, 8, 12, 16, 24, 32})


#: Volume misfit (|ln|) within which estimates are taken as equally good (the table's median error
#: is 6 %, its 90th percentile about 15 %).
VOLUME_SLACK = 0.15


def _plausibility(p: CompositionProposal) -> tuple[bool, bool, float, bool, float]:
    """Sort key, most plausible first: a common Z, a volume within :data:`VOLUME_SLACK`, a simple
    formula (fewest atoms per formula unit), every element in one of its common oxidation states,
    then the volume misfit."""
    mixed = any(q not in Element(sym).common_oxidation_states for sym, q in p.oxidation_states.items())
    return (p.z not in COMMON_Z, p.volume_misfit > VOLUME_SLACK, p.formula.num_atoms, mixed, p.volume_misfit)


def propose_compositions(
    elements: str | Sequence[str],
    cell_volume: float,
    *,
    max_atoms: int = MAX_ATOMS_PER_CELL,
    tolerance: float = 0.25,
    limit: int = 5,
) -> list[CompositionProposal]:
    """Cell contents made of every one of ``elements`` that fill ``cell_volume`` (Å³, e.g. the indexed
    cell) within ``tolerance`` (relative, log scale) and are charge balanced with common oxidation
    states (not checked for metals only), most plausible first (:func:`_plausibility`); at most
    ``limit``, each reduced formula once (with its most plausible Z). Raises :class:`UsageError` for an
    unusable element list."""
    symbols = [el.symbol for el in parse_elements(elements)]
    if len(set(symbols)) != len(symbols):
        raise UsageError(f"element listed twice in {elements!r}")
    if not math.isfinite(cell_volume) or cell_volume <= 0:
        raise UsageError(f"cell volume must be positive, got {cell_volume!r}")
    vols = [atomic_volume(Element(s)) for s in symbols]
    lo, hi = cell_volume * math.exp(-tolerance), cell_volume * math.exp(tolerance)
    needs_balance = any(s in ANION_FORMERS for s in symbols)
    found: dict[str, CompositionProposal] = {}

    def walk(i: int, counts: list[int], volume: float, atoms: int) -> None:
        if i == len(symbols):
            if not lo <= volume <= hi:
                return
            content = dict(zip(symbols, counts, strict=True))
            states = _charge_balance(content) if needs_balance else {}
            if states is None:
                return
            reduced, z = reduced_formula_and_units(Composition(content))
            misfit = abs(math.log(cell_volume / volume))
            key = reduced.reduced_formula
            better = key not in found or (z in COMMON_Z, -misfit) > (
                found[key].z in COMMON_Z,
                -found[key].volume_misfit,
            )
            if better:
                found[key] = CompositionProposal(reduced, z, misfit, states)
            return
        rest = sum(vols[i + 1 :])  # every later element needs at least one atom
        n = 1
        while atoms + n + (len(symbols) - i - 1) <= max_atoms and volume + n * vols[i] + rest <= hi:
            walk(i + 1, [*counts, n], volume + n * vols[i], atoms + n)
            n += 1

    walk(0, [], 0.0, 0)
    ranked = sorted(found.values(), key=_plausibility)
    return ranked[:limit]
