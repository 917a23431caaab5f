"""Solve-side disorder (issue 8): non-stoichiometric compositions → ordered parent + disordered/supercell models.

Hook for :mod:`xrdsolve.pipeline` (two calls):

1. ``plan = disorder_plan(composition_text)`` *before* generating candidates: the stoichiometric parent to solve
   for (``plan.parent``, a pymatgen Composition) and what differs from it (vacancies or mixed species per element).
   ``Li0.6CoO2`` → parent LiCoO2, Li 40 % vacant; ``Fe0.9O`` → FeO, Fe 10 % vacant; ``(Mn,Fe)3O4`` → Mn3O4 with the
   Mn sites mixed Mn/Fe (equal fractions to start); ``La0.7Sr0.3MnO3`` (fractions adding up to a whole number,
   all else whole) → LaMnO3 with the La sites mixed La/Sr, restrained to 0.7/0.3. A stoichiometric composition
   gives ``plan.trivial``.
2. ``models = disorder_models(pattern, ranked_structures, plan, mode, max_mult)`` *after* ranking the ordered
   candidates: for the best parents it refines the disordered average (occupancies of the affected sites refined
   under a composition restraint) and, when ``max_mult`` ≥ 2 and the defect is a vacancy/substitution at a
   realisable concentration, the ordered supercells with the order/disorder decision
   (:func:`xrdsolve.refine.supercells.compare_order_disorder`). ``mode``: "off" (nothing), "auto" (disordered
   models added to the ordered ones), "only" (the caller keeps only these).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Composition, Element, Structure

from .errors import UsageError

log = logging.getLogger(__name__)

DISORDER_MODES = ("auto", "off", "only")
_MIXED = re.compile(r"\(([A-Z][a-z]?(?:\s*,\s*[A-Z][a-z]?)+)\)\s*([0-9.]*)")


@dataclass
class DisorderPlan:
    """Stoichiometric parent and the deviations: vacancy fraction per element, mixed species per element."""

    text: str
    parent: Composition
    vacancies: dict[str, float] = field(default_factory=dict)  # element -> vacant fraction of its sites
    mixed: dict[str, list[str]] = field(default_factory=dict)  # parent element -> species sharing its sites
    target: Composition | None = None  # the full (non-stoichiometric) composition, for the restraint

    @property
    def trivial(self) -> bool:
        return not self.vacancies and not self.mixed

    def to_dict(self) -> dict[str, Any]:
        return {
            "composition": self.text,
            "parent": self.parent.formula,
            "vacancies": self.vacancies,
            "mixed": self.mixed,
        }


def disorder_plan(text: str, tolerance: float = 0.02) -> DisorderPlan:
    """The stoichiometric parent of ``text`` (see the module docstring). Raises UsageError for unreadable text."""
    mixed: dict[str, list[str]] = {}
    plain = text
    for m in _MIXED.finditer(text):
        species = [s.strip() for s in m.group(1).split(",")]
        mixed[species[0]] = species
        plain = plain.replace(m.group(0), f"{species[0]}{m.group(2)}")
    try:
        comp = Composition(plain)
    except Exception as exc:  # pymatgen raises ValueError / CompositionError
        raise UsageError(f"cannot read composition {text!r} ({exc})") from None
    unknown = [str(el) for el in comp if not isinstance(el, Element)]
    if unknown:
        raise UsageError(f"cannot read composition {text!r}: unknown element(s) {', '.join(unknown)}")
    amounts = {el.symbol: float(a) for el, a in comp.items()}
    inferred = _shared_site(amounts, tolerance) if not mixed else None
    if inferred is not None:  # La0.7Sr0.3MnO3: La and Sr share one site, nothing else deviates
        mixed[inferred[0]] = inferred
        total = float(round(sum(amounts[el] for el in inferred)))
        amounts = {el: a for el, a in amounts.items() if el not in inferred[1:]} | {inferred[0]: total}
    # smallest integer scale at which every element but at most one is integral; that one is deficient
    for scale in range(1, 9):
        rounded = {el: max(1, math.ceil(a * scale - tolerance)) for el, a in amounts.items()}
        off = [el for el, a in amounts.items() if abs(a * scale - rounded[el]) > tolerance * rounded[el]]
        if len(off) <= 1:
            break
    else:
        raise UsageError(f"{text}: no stoichiometric parent with one deficient element found (scales 1–8)")
    vacancies = {el: round(1.0 - amounts[el] * scale / rounded[el], 4) for el in off}
    target = None if mixed and inferred is None else comp
    return DisorderPlan(text, Composition(rounded), vacancies, mixed, target)


def _shared_site(amounts: dict[str, float], tolerance: float) -> list[str] | None:
    """The elements with non-integral amounts, largest first, when there are at least two, they add up to a
    whole number and every other amount is whole: species sharing one set of sites (La0.7Sr0.3MnO3,
    Ba0.5La0.5CoO3); else None."""
    fractional = [el for el, a in amounts.items() if abs(a - round(a)) > tolerance * max(1, round(a))]
    total = sum(amounts[el] for el in fractional)
    if len(fractional) < 2 or round(total) < 1 or abs(total - round(total)) > tolerance * round(total):
        return None
    return sorted(fractional, key=lambda el: -amounts[el])


def disorder_models(
    pattern: Any,
    structures: Sequence[Structure],
    plan: DisorderPlan,
    mode: str = "auto",
    max_mult: int = 0,
    instrument: Any | None = None,
    top: int = 2,
    options: Any | None = None,
    supercell_parent: int | None = 0,
    max_supercells: int = 12,
) -> list[dict[str, Any]]:
    """Disordered (and supercell) models derived from the first ``top`` parents; ordered supercells
    (at most ``max_supercells``, highest symmetry first) of ``structures[supercell_parent]`` only (None: none).

    Returns one dict per parent: {"parent_index", "disordered": RefinementResult, "order_decision":
    OrderDecision | None, "occupancy_model": dict}. Empty for mode "off" or a trivial plan.
    """
    from xrdsolve.refine.disorder import OccupancyModel, refine_disordered
    from xrdsolve.refine.supercells import compare_order_disorder, disordered_average

    if mode not in DISORDER_MODES:
        raise UsageError(f"--disorder must be one of {', '.join(DISORDER_MODES)}, got {mode!r}")
    if mode == "off" or plan.trivial:
        return []
    out = []
    for i, parent in enumerate(structures[:top]):
        model = parent.copy()
        labels = _label_sites(model)
        refine_sites: list[str] = []
        mix: dict[str, list[str]] = {}
        for el, frac in plan.vacancies.items():
            for lab in sorted({lab for lab, s in zip(labels, model, strict=True) if s.specie.symbol == el}):
                model = disordered_average(model, lab, frac)
                refine_sites.append(lab)
        for el, species in plan.mixed.items():
            for lab in sorted({lab for lab, s in zip(labels, parent, strict=True) if s.specie.symbol == el}):
                mix[lab] = species
        restraint = (plan.target.formula, 100.0) if plan.target is not None else None
        occ = OccupancyModel.build(refine_sites, mix, None, restraint)
        entry: dict[str, Any] = {"parent_index": i, "occupancy_model": occ.to_dict(), "order_decision": None}
        try:
            entry["disordered"] = refine_disordered(
                pattern, model, occ, instrument=instrument, options=options
            )
        except Exception as exc:  # one bad parent must not stop the others; recorded for the summary
            log.warning("disordered model of parent %d failed: %s", i, exc)
            entry["error"] = str(exc)
            out.append(entry)
            continue
        if max_mult >= 2 and len(plan.vacancies) == 1 and refine_sites and i == supercell_parent:
            el, frac = next(iter(plan.vacancies.items()))
            # vacancies may order over all sites of the element, whatever their labels in the parent
            pooled = parent.copy()
            for site in pooled:
                if site.specie.symbol == el:
                    site.label = f"{el}_all"
            try:
                entry["order_decision"] = compare_order_disorder(
                    pattern,
                    pooled,
                    f"{el}_all",
                    frac,
                    max_mult=max_mult,
                    instrument=instrument,
                    options=options,
                    max_candidates=max_supercells,
                )
            except Exception as exc:
                entry["supercell_error"] = str(exc)
        out.append(entry)
    return out


def _label_sites(structure: Structure) -> list[str]:
    """Site labels (kept when present; element + orbit index from the parameterisation otherwise)."""
    labels = [getattr(s, "label", None) for s in structure]
    if all(labels) and len(set(labels)) < len(labels) + 1:
        return [str(x) for x in labels]
    from xrdsolve.refine.params import parameterize

    ph = parameterize(structure)
    out = [""] * len(structure)
    for site in ph.sites:
        for j in site.site_indices:
            out[j] = site.label
    return out


def disorder_candidates(
    pattern: Any,
    ordered: Sequence[Any],
    plan: DisorderPlan,
    mode: str,
    max_mult: int,
    instrument: Any | None = None,
    top: int = 2,
    deadline: float | None = None,
) -> tuple[list[Any], list[dict[str, Any]], list[str]]:
    """The solve's disorder stage: disordered (and, when the data demand it, ordered-supercell) candidates
    derived from the best ``top`` ordered candidates (:class:`~xrdsolve.solution.Candidate`, rank order);
    their refinements stop iterating at ``deadline`` (``time.perf_counter()`` value, RefineOptions.deadline).

    Returns (new candidates, unranked; the JSON-ready record per parent with the order/disorder decision and its
    statistics; messages). The records keep the OrderDecision under ``"_decision"`` for writing supercell CIFs.
    """
    from xrdsolve.refine.rietveld import RefineOptions, background_terms

    from .solution import Candidate

    parents = list(ordered[:top])
    i_sub = smallest_cell_index([c.structure for c in ordered]) if max_mult >= 2 else None
    sub = None if i_sub is None else ordered[i_sub]
    if sub is not None and all(sub is not p for p in parents):
        parents.append(sub)
    models = disorder_models(
        pattern,
        [c.structure for c in parents],
        plan,
        mode,
        max_mult,
        instrument=instrument,
        top=len(parents),
        supercell_parent=None if sub is None else parents.index(sub),
        # one staged pass each and the same background as the ordered candidates, whose fits they are ranked with
        options=RefineOptions(
            annealing_restarts=(),
            rescue_gof=None,
            n_background=background_terms(pattern.two_theta),
            deadline=deadline,
        ),
    )
    new: list[Any] = []
    records: list[dict[str, Any]] = []
    messages: list[str] = []
    for entry in models:
        parent = parents[entry["parent_index"]]
        record: dict[str, Any] = {
            "parent_rank": parent.rank,
            "parent_spacegroup": parent.spacegroup,
            "occupancy_model": entry["occupancy_model"],
        }
        if "error" in entry:
            record["error"] = entry["error"]
            messages.append(f"disordered model of rank {parent.rank} failed: {entry['error']}")
            records.append(record)
            continue
        res = entry["disordered"]
        record.update(rwp=float(res.rwp), gof=float(res.gof), occupancies=_occupancies(res))
        new.append(
            Candidate.from_result(
                res,
                {
                    "source": "disordered",
                    "parent_rank": parent.rank,
                    "occupancies": record["occupancies"],
                    "converged": bool(res.converged),
                },
            )
        )
        decision = entry.get("order_decision")
        if "supercell_error" in entry:
            record["supercell_error"] = entry["supercell_error"]
            messages.append(f"supercells of rank {parent.rank}: {entry['supercell_error']}")
        if decision is not None:
            record["order_decision"] = decision.to_dict()
            record["_decision"] = decision
            if decision.statistics.get("capped"):
                messages.append(f"supercells of rank {parent.rank}: {decision.statistics['enumeration']}")
            if decision.ordered and decision.best is not None:
                sup = decision.result_for(decision.best.label)
                new.append(
                    Candidate.from_result(
                        sup,
                        {
                            "source": "supercell",
                            "parent_rank": parent.rank,
                            "multiplicity": decision.best.multiplicity,
                            "label": decision.best.label,
                            "converged": bool(sup.converged),
                        },
                    )
                )
        records.append(record)
    return new, records, messages


def smallest_cell_index(structures: Sequence[Structure]) -> int | None:
    """Index of the first of ``structures`` (rank order) with the fewest formula units in its primitive cell:
    the parent whose defect orderings are tested (None for an empty list).

    Ordered supercells are built from the cell of the disordered average. When the pattern has superstructure
    lines the best ordered (stoichiometric) candidates usually sit in the indexed supercell, where they fit
    those lines with a distorted arrangement; the average structure is the candidate found in a sub-cell
    (:func:`xrdsolve.refine.indexing.subcells.strong_subcells`), ranked lower.
    """
    best: tuple[float, int] | None = None
    for i, structure in enumerate(structures):
        try:
            prim = structure.get_primitive_structure(tolerance=0.25)
        except Exception:  # a degenerate cell: judge it by the cell as given
            prim = structure
        units = len(prim) / max(prim.composition.reduced_composition.num_atoms, 1e-9)
        key = (round(units, 3), i)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def _occupancies(result: Any) -> dict[str, dict[str, dict[str, float]]]:
    """{site label: {element: {"value", "esd"}}} of the first phase of a refinement result."""
    return {
        site.label: {el: v.to_dict() for el, v in site.occupancy.items()} for site in result.phases[0].sites
    }
