"""Ordered defect supercells of a parent structure, scored against a pattern and compared with the disordered
average by a penalised criterion.

:func:`enumerate_supercells` builds every supercell of the *primitive* parent up to ``max_mult`` times the
primitive cell of the disordered average (all Hermite normal forms of each determinant, the parent cell itself
included when it already holds several defect sites), places vacancies, substitutions or anti-site exchanges on the
sites of one CIF label at the requested concentration in every possible way, drops arrangements whose primitive cell is smaller than the
supercell (they belong to a lower multiplicity) and keeps one representative per symmetry-distinct arrangement
(pymatgen ``StructureMatcher`` on the ordered structures; ``SpacegroupAnalyzer`` for the space group). No
enumlib. The raw number of arrangements is checked *before* building them (``max_arrangements``); the distinct
ones are capped at ``max_candidates`` (highest symmetry first) with a logged message.

:func:`compare_order_disorder` refines the disordered average (parent with fractional occupancy) and every ordered
candidate against the pattern (one batched refinement) and applies Hamilton's R-ratio test (F-test form,
significance ``alpha``): the best ordered model is chosen only when its improvement of the weighted residual is
significant for the number of extra parameters. BIC = χ² + k ln n is reported too.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from .errors import RefineError

log = logging.getLogger(__name__)


@dataclass
class SupercellCandidate:
    """One ordered arrangement: structure (Niggli-reduced supercell), multiplicity (supercell volume / primitive
    cell of the disordered average),
    the HNF matrix on the primitive parent, the space group of the ordered structure."""

    structure: Structure
    multiplicity: int
    matrix: np.ndarray
    spacegroup: str
    spacegroup_number: int
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "multiplicity": self.multiplicity,
            "matrix": self.matrix.astype(int).tolist(),
            "spacegroup": self.spacegroup,
            "spacegroup_number": self.spacegroup_number,
            "formula": self.structure.composition.formula,
            "n_atoms": len(self.structure),
        }


@dataclass
class SupercellEnumeration:
    """Distinct candidates plus the bookkeeping of the enumeration (counts, whether the list was capped)."""

    candidates: list[SupercellCandidate]
    n_arrangements: int
    n_distinct: int
    capped: bool
    message: str = ""


def hnf_matrices(det: int) -> list[np.ndarray]:
    """All lower-triangular Hermite normal forms with determinant ``det`` (supercells of index det)."""
    out = []
    for a in range(1, det + 1):
        if det % a:
            continue
        for c in range(1, det // a + 1):
            if (det // a) % c:
                continue
            f = det // (a * c)
            for b in range(a):  # lower-triangular HNF: each column's off-diagonal entries < its diagonal
                for d in range(a):
                    for e in range(c):
                        out.append(np.array([[a, 0, 0], [b, c, 0], [d, e, f]], dtype=int))
    return out


def _site_label(site: Any, index: int) -> str:
    return str(getattr(site, "label", None) or f"{site.species_string}{index}")


def enumerate_supercells(
    parent: Structure,
    site: str,
    concentration: float,
    substitute: str | None = None,
    max_mult: int = 2,
    max_arrangements: int = 20000,
    max_candidates: int = 30,
    exchange_with: str | None = None,
) -> SupercellEnumeration:
    """Symmetry-distinct ordered supercells of ``parent`` with a fraction ``concentration`` of the sites labelled
    ``site`` made vacant (``substitute`` None) or replaced by ``substitute`` — or, with ``exchange_with`` (another
    site label), swapped with as many sites of that label (ordered anti-sites, composition kept).

    ``parent`` must be ordered on ``site`` (the disordered average is built separately). Raises RefineError for
    an unknown label, a concentration outside (0, 1), no multiplicity ≤ ``max_mult`` that realises the
    concentration, or more than ``max_arrangements`` arrangements to examine (combinatorial explosion).
    """
    if not 0.0 < concentration < 1.0:
        raise RefineError(f"defect concentration must be between 0 and 1, got {concentration}")
    if exchange_with is not None and substitute is not None:
        raise RefineError("give either a substitute or an anti-site partner (exchange_with), not both")
    if exchange_with is not None:
        species = {_site_label(s, i): s.species for i, s in enumerate(parent)}
        if site in species and species.get(exchange_with) == species[site]:
            raise RefineError(
                f"{site} and {exchange_with} hold the same species: exchanging them changes nothing"
            )
    if max_mult < 2:
        raise RefineError(f"max_mult must be ≥ 2, got {max_mult}")
    prim = parent.get_primitive_structure()
    labels = [_site_label(s, i) for i, s in enumerate(prim)]
    if site not in labels:
        raise RefineError(f"unknown site label {site!r}; the parent has {', '.join(sorted(set(labels)))}")
    n_site = labels.count(site)
    n_other = 0
    if exchange_with is not None:
        if exchange_with not in labels or exchange_with == site:
            raise RefineError(
                f"anti-site partner {exchange_with!r} must be another site label of the parent "
                f"({', '.join(sorted(set(labels)))})"
            )
        n_other = labels.count(exchange_with)
    # the parent may itself be a supercell of the disordered average (a solve that indexed the ordered cell):
    # multiplicities count against the average's primitive cell, and orderings inside the parent cell (det 1,
    # when it holds several defect sites) are candidates too
    average = disordered_average(prim, site, concentration, substitute, exchange_with)
    parent_mult = max(1, round(prim.volume / average.get_primitive_structure(tolerance=0.25).volume))
    # count first (no structures built): Σ over multiplicities of #HNF × C(n·m, k) (× C(n'·m, k) for anti-sites)
    plan = []
    total = 0
    for det in range(1, max_mult // parent_mult + 1):
        k_float = concentration * n_site * det
        k = round(k_float)
        if abs(k - k_float) > 1e-6 or k == 0 or (exchange_with is not None and k > n_other * det):
            continue
        n_hnf = len(hnf_matrices(det))
        combos = math.comb(n_site * det, k) * (math.comb(n_other * det, k) if exchange_with else 1)
        plan.append((det, k))
        total += n_hnf * combos
    if not plan:
        raise RefineError(
            f"concentration {concentration} of {site} ({n_site} per primitive cell) needs a supercell larger "
            f"than max_mult={max_mult}"
        )
    if total > max_arrangements:
        raise RefineError(
            f"{total} arrangements to examine for multiplicities ≤ {max_mult} (limit {max_arrangements}): "
            "lower --supercells MAXMULT or raise max_arrangements"
        )
    matcher = StructureMatcher(primitive_cell=True, scale=False, attempt_supercell=False)
    distinct: list[SupercellCandidate] = []
    for det, k in plan:
        for hnf in hnf_matrices(det):
            sup = prim.copy()
            sup.add_site_property("parent_label", labels)  # make_supercell renames labels (La1 -> La1_1)
            sup.make_supercell(hnf)
            parent_labels = sup.site_properties["parent_label"]
            idx = [i for i, lab in enumerate(parent_labels) if lab == site]
            partners = [i for i, lab in enumerate(parent_labels) if lab == exchange_with]
            sup.remove_site_property("parent_label")
            for chosen, swapped in _arrangements(idx, partners, k, exchange_with is not None):
                s = sup.copy()
                if exchange_with is not None:
                    host, guest = sup[idx[0]].species, sup[partners[0]].species
                    for i in chosen:
                        s.replace(i, guest, properties=sup[i].properties, label=f"{guest.formula}_{site}")
                    for j in swapped:
                        s.replace(
                            j, host, properties=sup[j].properties, label=f"{host.formula}_{exchange_with}"
                        )
                elif substitute is None:
                    s.remove_sites(list(chosen))
                else:
                    for i in chosen:
                        s.replace(i, substitute, properties=None, label=f"{substitute}_{site}")
                if len(s.get_primitive_structure()) < len(s):
                    continue  # periodic with a smaller cell: found at a lower multiplicity
                sga = SpacegroupAnalyzer(s, symprec=0.1)
                sg_number = sga.get_space_group_number()
                if any(
                    c.multiplicity == det * parent_mult
                    and c.spacegroup_number == sg_number
                    and matcher.fit(c.structure, s)
                    for c in distinct
                ):
                    continue
                distinct.append(
                    SupercellCandidate(
                        s.get_reduced_structure(),
                        det * parent_mult,
                        hnf,
                        sga.get_space_group_symbol(),
                        sg_number,
                    )
                )
    distinct.sort(key=lambda c: (c.multiplicity, -c.spacegroup_number))
    for i, c in enumerate(distinct):
        c.label = f"x{c.multiplicity}_{i}_{c.spacegroup.replace('/', '_')}"
    capped = len(distinct) > max_candidates
    message = f"{total} arrangements, {len(distinct)} symmetry-distinct ordered supercells (multiplicity ≤ {max_mult})"
    if capped:
        message += f"; capped to the {max_candidates} of highest symmetry"
        log.warning(message)
    else:
        log.info(message)
    return SupercellEnumeration(distinct[:max_candidates], total, len(distinct), capped, message)


def _arrangements(
    idx: list[int], partners: list[int], k: int, exchange: bool
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(defect sites, anti-site partners) pairs: k of ``idx`` (and, for an exchange, k of ``partners``)."""
    for chosen in itertools.combinations(idx, k):
        if not exchange:
            yield chosen, ()
            continue
        for swapped in itertools.combinations(partners, k):
            yield chosen, swapped


def disordered_average(
    parent: Structure,
    site: str,
    concentration: float,
    substitute: str | None = None,
    exchange_with: str | None = None,
) -> Structure:
    """The parent with the sites labelled ``site`` partially occupied: (1 − c) of the host, c of ``substitute``
    (or vacant). With ``exchange_with`` (anti-sites): c of ``site`` holds the partner's species and the partner
    sites hold the same number of host atoms (fraction c·n_site/n_partner), so the composition is kept."""
    out = parent.copy()
    labels = [_site_label(s, i) for i, s in enumerate(parent)]
    if site not in labels:
        raise RefineError(f"unknown site label {site!r}")
    if exchange_with is not None and exchange_with not in labels:
        raise RefineError(f"unknown site label {exchange_with!r}")
    host = parent[labels.index(site)].species
    guest = parent[labels.index(exchange_with)].species if exchange_with is not None else None
    c_other = concentration * labels.count(site) / max(labels.count(exchange_with or site), 1)
    if exchange_with is not None and c_other > 1.0 + 1e-9:
        raise RefineError(
            f"anti-site fraction {concentration} of {site} needs more {exchange_with} sites than the parent has"
        )
    for i, s in enumerate(parent):
        if labels[i] == site:
            comp = {str(sp): float(occ) * (1.0 - concentration) for sp, occ in s.species.items()}
            if substitute is not None:
                comp[substitute] = comp.get(substitute, 0.0) + concentration
            if guest is not None:
                for sp, occ in guest.items():
                    comp[str(sp)] = comp.get(str(sp), 0.0) + concentration * float(occ)
        elif exchange_with is not None and labels[i] == exchange_with:
            comp = {str(sp): float(occ) * (1.0 - c_other) for sp, occ in s.species.items()}
            for sp, occ in host.items():
                comp[str(sp)] = comp.get(str(sp), 0.0) + c_other * float(occ)
        else:
            continue
        out.replace(i, Composition(comp), properties=s.properties, label=labels[i])
    return out


@dataclass
class OrderDecision:
    """Outcome of :func:`compare_order_disorder` (χ² weighted sums; R factors as fractions)."""

    ordered: bool
    best: SupercellCandidate | None
    disordered_result: Any
    ordered_results: list[Any]
    statistics: dict[str, Any] = field(default_factory=dict)

    def result_for(self, label: str) -> Any:
        """The refinement result of the ordered candidate labelled ``label``."""
        labels = [c["label"] for c in self.statistics["candidates"]]
        return self.ordered_results[labels.index(label)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": "ordered" if self.ordered else "disordered",
            "multiplicity": self.best.multiplicity if (self.ordered and self.best is not None) else 1,
            "best_ordered": None if self.best is None else self.best.to_dict(),
            **self.statistics,
        }


def hamilton_critical_ratio(b: int, dof: int, alpha: float) -> float:
    """Hamilton's R_{b, n−m, α} = sqrt(1 + b/(n−m) · F_{b, n−m}(1 − α))."""
    from scipy.stats import f as f_dist

    if b <= 0:
        return 1.0
    return math.sqrt(1.0 + b / max(dof, 1) * float(f_dist.ppf(1.0 - alpha, b, max(dof, 1))))


def decide(
    chi2_dis: float, k_dis: int, chi2_ord: float, k_ord: int, n_obs: int, alpha: float
) -> dict[str, Any]:
    """Hamilton R-ratio test of the ordered model (k_ord parameters) against the disordered one (k_dis).

    R = sqrt(χ²_dis/χ²_ord). With b = k_ord − k_dis > 0 extra parameters the ordered model is significant when
    R > R_{b, n−k_ord, α}; with b ≤ 0 (ordered model no richer) it wins when its χ² is lower by more than the
    same test run the other way would ask of the disordered model. BIC = χ² + k ln n for both.
    """
    ratio = math.sqrt(chi2_dis / max(chi2_ord, 1e-300))
    b = k_ord - k_dis
    if b > 0:
        crit = hamilton_critical_ratio(b, n_obs - k_ord, alpha)
        ordered = ratio > crit
    else:
        crit = hamilton_critical_ratio(max(-b, 1), n_obs - k_dis, alpha)
        ordered = ratio > crit
    return {
        "r_ratio": ratio,
        "r_critical": crit,
        "alpha": alpha,
        "extra_parameters": b,
        "bic_disordered": chi2_dis + k_dis * math.log(n_obs),
        "bic_ordered": chi2_ord + k_ord * math.log(n_obs),
        "ordered": bool(ordered),
    }


def compare_order_disorder(
    pattern: Any,
    parent: Structure,
    site: str,
    concentration: float,
    substitute: str | None = None,
    max_mult: int = 2,
    alpha: float = 0.001,
    instrument: Any | None = None,
    radiation: Any | None = None,
    options: Any | None = None,
    max_candidates: int = 30,
    exchange_with: str | None = None,
) -> OrderDecision:
    """Refine the disordered average and every ordered supercell candidate against ``pattern`` and decide.
    ``substitute``/``exchange_with`` as in :func:`enumerate_supercells` (vacancies when both are None)."""
    from .rietveld import refine_candidates

    enum = enumerate_supercells(
        parent,
        site,
        concentration,
        substitute,
        max_mult,
        max_candidates=max_candidates,
        exchange_with=exchange_with,
    )
    dis = disordered_average(parent, site, concentration, substitute, exchange_with)
    structures = [dis] + [c.structure for c in enum.candidates]
    results = refine_candidates(
        pattern, structures, instrument=instrument, radiation=radiation, options=options
    )
    return _decision(results[0], results[1:], enum, alpha)


def _decision(
    dis_result: Any, ord_results: list[Any], enum: SupercellEnumeration, alpha: float
) -> OrderDecision:
    ok = [i for i, r in enumerate(ord_results) if np.isfinite(r.chi2)]
    stats: dict[str, Any] = {
        "enumeration": enum.message,
        "n_candidates": len(enum.candidates),
        "capped": enum.capped,
        "disordered": {"chi2": dis_result.chi2, "rwp": dis_result.rwp, "n_params": dis_result.n_params},
        "candidates": [
            {**c.to_dict(), "chi2": r.chi2, "rwp": r.rwp, "n_params": r.n_params}
            for c, r in zip(enum.candidates, ord_results, strict=True)
        ],
    }
    if not ok:
        return OrderDecision(False, None, dis_result, ord_results, stats)
    best_i = min(ok, key=lambda i: ord_results[i].chi2)
    best = ord_results[best_i]
    test = decide(dis_result.chi2, dis_result.n_params, best.chi2, best.n_params, dis_result.n_obs, alpha)
    stats.update(test)
    return OrderDecision(bool(test["ordered"]), enum.candidates[best_i], dis_result, ord_results, stats)


def write_order_outputs(decision: OrderDecision, directory: Any) -> dict[str, str]:
    """Write disordered.cif (refined, fractional occupancies), supercell_<label>.cif per ordered candidate
    (refined) and order_decision.json; returns {kind: path}."""
    import json
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"disordered": str(out / "disordered.cif")}
    (out / "disordered.cif").write_text(decision.disordered_result.to_cif(0))
    for cand in decision.statistics.get("candidates", []):
        label = cand["label"]
        path = out / f"supercell_{label}.cif"
        path.write_text(decision.result_for(label).to_cif(0))
        paths[label] = str(path)
    (out / "order_decision.json").write_text(json.dumps(decision.to_dict(), indent=1, default=float))
    paths["decision"] = str(out / "order_decision.json")
    return paths
