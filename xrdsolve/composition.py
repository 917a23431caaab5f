"""Compositions given by users: parsing, formula units per cell (Z) and volume estimates.

Volumes are in Å³. The per-atom volume estimate is the sum of atomic volumes from pymatgen's
tabulated atomic radii divided by a typical packing fraction; it is only used to rank Z values
and to sanity-check cells, never as a hard constraint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pymatgen.core import Composition, Element

from .errors import UsageError

#: Typical packing fraction of inorganic crystals (ratio of atomic-sphere volume to cell volume).
PACKING_FRACTION = 0.52
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
        if not isinstance(el, Element) and not hasattr(el, "symbol"):
            raise UsageError(f"composition {text!r}: unknown species {el!r}")
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


def atomic_volume(element: Element) -> float:
    """Rough space needed by one atom in a crystal, Å³ (sphere of the atomic radius / packing)."""
    radius = element.atomic_radius or element.atomic_radius_calculated or 1.5
    return 4.0 / 3.0 * math.pi * float(radius) ** 3 / PACKING_FRACTION


def estimated_volume_per_formula(comp: Composition) -> float:
    """Estimated cell volume taken by one formula unit of ``comp``, Å³."""
    return sum(amt * atomic_volume(Element(el.symbol)) for el, amt in comp.items())


def z_candidates(
    comp: Composition,
    cell_volume: float | None = None,
    *,
    max_atoms: int = MAX_ATOMS_PER_CELL,
    max_z: int = 16,
    tolerance: float = 0.45,
) -> list[int]:
    """Formula units per cell worth trying, most plausible first.

    With a cell volume (Å³, e.g. from indexing) only Z whose estimated volume is within
    ``tolerance`` (relative, log scale) of it are kept; otherwise every Z with at most ``max_atoms``
    atoms is returned, small Z first. The formula is reduced first, so ``Ti2O4`` and ``TiO2`` agree.
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
    scored = sorted(zs, key=lambda z: abs(math.log(cell_volume / (z * v_fu))))
    kept = [z for z in scored if abs(math.log(cell_volume / (z * v_fu))) <= tolerance]
    return kept or scored[:2]
