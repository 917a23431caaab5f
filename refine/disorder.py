"""Occupancy models for disordered sites: vacancies, site mixing, anti-site exchange, composition restraints.

A :class:`OccupancyModel` names sites by their CIF ``_atom_site_label``:

* ``refine_occupancy`` — every species occupancy of the site is a free parameter in [0, 1] and the site total
  stays ≤ 1 (vacancies);
* ``mix`` — the site holds the given species whose fractions sum to the site total of the input (n − 1 free
  fractions; the last species takes the rest); a site both mixed and in ``refine_occupancy`` gets n free
  occupancies with total ≤ 1;
* ``exchange`` — pairs of sites (A, B) exchanging their majority species with one shared parameter x (atoms per
  A site): A loses x of its species and gains x of B's, B does the reverse scaled by m_A/m_B, so the cell
  composition is unchanged (Li/Ni anti-site disorder in layered oxides).

Every occupancy stays *linear* in the parameters (the :class:`~xrdsolve.refine.params.PhaseParameterization`
contract); inequalities (site total ≤ 1, last mixed fraction ≥ 0) and the composition restraint enter the
least-squares problem as extra weighted residuals (:class:`RestrainedModel`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure
from torch import Tensor

from .errors import RefineError, StructureError
from .params import OCCUPANCY_TOLERANCE, PhaseParameterization, parameterize

log = logging.getLogger(__name__)

#: weight (1/σ) of an occupancy inequality violation; a violation of 0.01 costs 1e4·… in χ²
INEQUALITY_WEIGHT = 1.0e4


@dataclass(frozen=True)
class OccupancyModel:
    """Which sites get occupancy parameters (labels as in the input CIF) and an optional composition restraint.

    ``composition_restraint`` = (formula, weight): the atom fractions of the cell are pulled towards those of
    ``formula`` with weight = 1/σ per atom fraction (e.g. 100 → σ = 0.01).
    """

    refine_occupancy: tuple[str, ...] = ()
    mix: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exchange: tuple[tuple[str, str], ...] = ()
    composition_restraint: tuple[str, float] | None = None

    @classmethod
    def build(
        cls,
        refine_occupancy: Iterable[str] | None = None,
        mix: Mapping[str, Sequence[str]] | None = None,
        exchange: Iterable[Sequence[str]] | None = None,
        composition_restraint: tuple[str, float] | None = None,
    ) -> OccupancyModel:
        """Normalise user input (lists, tuples) into a model; raises RefineError for malformed entries."""
        ex = []
        for pair in exchange or ():
            if len(pair) != 2 or pair[0] == pair[1]:
                raise RefineError(f"exchange needs two different site labels, got {tuple(pair)}")
            ex.append((str(pair[0]), str(pair[1])))
        mixes = {}
        for site, species in (mix or {}).items():
            sp = tuple(str(s) for s in species)
            if len(sp) < 2 or len(set(sp)) != len(sp):
                raise RefineError(f"mix {site}: give at least two different species, got {sp}")
            for s in sp:
                _element(s)
            mixes[str(site)] = sp
        if composition_restraint is not None:
            formula, weight = composition_restraint
            if not float(weight) > 0:
                raise RefineError(f"composition restraint weight must be > 0, got {weight}")
            try:
                Composition(formula)
            except Exception as exc:  # pymatgen raises ValueError/CompositionError
                raise RefineError(f"composition restraint: cannot read formula {formula!r} ({exc})") from None
            composition_restraint = (str(formula), float(weight))
        return cls(tuple(str(s) for s in refine_occupancy or ()), mixes, tuple(ex), composition_restraint)

    @property
    def empty(self) -> bool:
        return not (self.refine_occupancy or self.mix or self.exchange or self.composition_restraint)

    def labels(self) -> set[str]:
        out = set(self.refine_occupancy) | set(self.mix)
        for a, b in self.exchange:
            out |= {a, b}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "refine_occupancy": list(self.refine_occupancy),
            "mix": {k: list(v) for k, v in self.mix.items()},
            "exchange": [list(p) for p in self.exchange],
            "composition_restraint": None
            if self.composition_restraint is None
            else {"formula": self.composition_restraint[0], "weight": self.composition_restraint[1]},
        }


def _element(species: str) -> str:
    try:
        return Element(str(species).rstrip("0123456789+-")).symbol
    except ValueError:
        raise RefineError(f"unknown chemical species {species!r}") from None


def check_site_totals(structure: Structure, tol: float = OCCUPANCY_TOLERANCE) -> None:
    """Raise StructureError when a site's total occupancy exceeds 1 beyond rounding (``tol``)."""
    for i, site in enumerate(structure):
        total = float(sum(site.species.values()))
        if total > tol:
            label = getattr(site, "label", None) or f"site {i}"
            raise StructureError(f"{label}: total occupancy {total:.3f} > 1 ({site.species.formula})")


# ---------------------------------------------------------------------------------------------- parameterisation
@dataclass
class _SiteOcc:
    """Occupancy of one site as species → (coefficients over new occupancy parameters, offset)."""

    species: list[str]
    coef: dict[str, dict[int, float]]
    offset: dict[str, float]


def apply_occupancy_model(ph: PhaseParameterization, model: OccupancyModel) -> PhaseParameterization:
    """A copy of ``ph`` whose occupancy parameters follow ``model`` (labels not in ``ph`` are ignored here;
    :func:`parameterize_disordered` checks that every label exists in some phase)."""
    labels = [s.label for s in ph.sites]
    by_label = {lab: i for i, lab in enumerate(labels)}
    occ_names: list[str] = []
    occ_start: list[float] = []
    ineq: list[tuple[dict[int, float], float]] = []  # Σ coef·p + offset ≥ 0
    site_occ: list[_SiteOcc] = []

    def new_param(name: str, v0: float) -> int:  # bounds [0, 1] (rietveld._initial_theta) + inequalities
        occ_names.append(name)
        occ_start.append(v0)
        return len(occ_names) - 1

    # label -> (parameter, species lost, species gained, factor, start value)
    exchanged: dict[str, tuple[int, str, str, float, float]] = {}
    for a, b in model.exchange:
        if a not in by_label or b not in by_label:
            continue
        for lab in (a, b):
            if lab in model.mix or lab in model.refine_occupancy or lab in exchanged:
                raise RefineError(
                    f"site {lab}: an exchanged site cannot also be mixed, refined or exchanged twice"
                )
        sa, sb = ph.sites[by_label[a]], ph.sites[by_label[b]]
        maj_a = sa.species[int(np.argmax(sa.occupancy))]
        maj_b = sb.species[int(np.argmax(sb.occupancy))]
        if _element(maj_a) == _element(maj_b):
            raise RefineError(f"exchange {a},{b}: both sites hold mainly {maj_a}; nothing to exchange")
        # x = occupancy of B's species on A; B changes by m_A/m_B per unit of x (cell composition conserved)
        x0 = float(dict(zip(sa.species, sa.occupancy, strict=True)).get(maj_b, 0.0))
        k = new_param(f"exchange.{a}.{b}", x0)
        exchanged[a] = (k, maj_a, maj_b, 1.0, x0)
        exchanged[b] = (k, maj_b, maj_a, sa.multiplicity / sb.multiplicity, x0)

    for site in ph.sites:
        lab = site.label
        cif = dict(zip(site.species, site.occupancy, strict=True))
        total = float(sum(site.occupancy))
        coef: dict[str, dict[int, float]] = {}
        offset: dict[str, float] = {}
        if lab in exchanged:
            k, loses, gains, fac, x0 = exchanged[lab]
            species = list(site.species) + ([gains] if gains not in cif else [])
            for sp in species:
                shift = fac * x0 if sp == loses else (-fac * x0 if sp == gains else 0.0)
                offset[sp] = cif.get(sp, 0.0) + shift
                coef[sp] = {k: -fac} if sp == loses else ({k: fac} if sp == gains else {})
            ineq.append(({k: -fac}, offset[loses]))  # the species given away cannot go negative
        elif lab in model.mix or (lab in model.refine_occupancy and site.is_mixed):
            species = list(model.mix.get(lab, site.species))
            if lab in model.mix:
                start = {sp: cif.get(sp, 0.0) for sp in species}
                if sum(start.values()) < 1e-6 or max(start.values()) > total - 1e-6:
                    start = {
                        sp: total / len(species) for sp in species
                    }  # ordered CIF: start at equal fractions
            else:
                start = cif
            if lab in model.refine_occupancy:  # n free occupancies, total ≤ 1
                for sp in species:
                    coef[sp] = {new_param(f"{lab}.occ.{sp}", start[sp]): 1.0}
                    offset[sp] = 0.0
                ineq.append(({next(iter(coef[sp])): -1.0 for sp in species}, 1.0))
            else:  # n-1 fractions, last = total − Σ
                ks = [new_param(f"{lab}.occ.{sp}", start[sp]) for sp in species[:-1]]
                for sp, k in zip(species[:-1], ks, strict=True):
                    coef[sp], offset[sp] = {k: 1.0}, 0.0
                coef[species[-1]] = {k: -1.0 for k in ks}
                offset[species[-1]] = total
                ineq.append(({k: -1.0 for k in ks}, total))
        elif lab in model.refine_occupancy:  # single species: vacancy fraction
            species = list(site.species)
            coef[species[0]] = {new_param(f"{lab}.occ.{species[0]}", total): 1.0}
            offset[species[0]] = 0.0
        elif site.is_mixed:  # default behaviour of parameterize: fractions keep the site total
            species = list(site.species)
            ks = [
                new_param(f"{lab}.occ.{sp}", o)
                for sp, o in zip(species[:-1], site.occupancy[:-1], strict=True)
            ]
            for sp, k in zip(species[:-1], ks, strict=True):
                coef[sp], offset[sp] = {k: 1.0}, 0.0
            coef[species[-1]] = {k: -1.0 for k in ks}
            offset[species[-1]] = total
        else:
            species = list(site.species)
            coef[species[0]], offset[species[0]] = {}, float(site.occupancy[0])
        site_occ.append(_SiteOcc(species, coef, offset))

    return _rebuild(ph, site_occ, occ_names, occ_start, ineq)


def _rebuild(
    ph: PhaseParameterization,
    site_occ: list[_SiteOcc],
    occ_names: list[str],
    occ_start: list[float],
    ineq: list[tuple[dict[int, float], float]],
) -> PhaseParameterization:
    """Replace the occupancy block of ``ph`` (columns and atom entries) by the new site occupancies."""
    keep_cols = [j for j, k in enumerate(ph.kinds) if k != "occ"]
    n_keep = len(keep_cols)
    # new layout: non-occupancy parameters in their order, occupancy parameters before B_iso (as in parameterize)
    kinds_keep = [ph.kinds[j] for j in keep_cols]
    b_first = kinds_keep.index("biso") if "biso" in kinds_keep else n_keep
    new_cols = keep_cols[:b_first] + [-1] * len(occ_names) + keep_cols[b_first:]
    n_par = len(new_cols)
    occ_col = {k: b_first + k for k in range(len(occ_names))}
    names, kinds, vals = [], [], []
    for j, old in enumerate(new_cols):
        if old >= 0:
            names.append(ph.names[old])
            kinds.append(ph.kinds[old])
            vals.append(float(ph.values[old]))
        else:
            k = j - b_first
            names.append(occ_names[k])
            kinds.append("occ")
            vals.append(float(occ_start[k]))

    def remap(row: np.ndarray) -> np.ndarray:
        out = np.zeros((*row.shape[:-1], n_par))
        for j, old in enumerate(new_cols):
            if old >= 0:
                out[..., j] = row[..., old]
        return out

    frac_map, frac_off, occ_map, occ_off, b_map, atom_species, atom_site = [], [], [], [], [], [], []
    sites = []
    for s_i, site in enumerate(ph.sites):
        entries = [n for n in range(ph.n_atoms) if ph.atom_site[n] == s_i]
        orbit = entries[: site.multiplicity]  # first species' orbit: positions and B map are shared
        so = site_occ[s_i]
        for sp in so.species:
            for n in orbit:
                frac_map.append(remap(ph.frac_map[n]))
                frac_off.append(ph.frac_offset[n])
                b_map.append(remap(ph.b_map[n]))
                row = np.zeros(n_par)
                for k, c in so.coef[sp].items():
                    row[occ_col[k]] = c
                occ_map.append(row)
                occ_off.append(so.offset[sp])
                atom_species.append(sp)
                atom_site.append(s_i)
        start_occ = tuple(
            float(so.offset[sp] + sum(c * occ_start[k] for k, c in so.coef[sp].items())) for sp in so.species
        )
        sites.append(dataclasses.replace(site, species=tuple(so.species), occupancy=start_occ))
    # drop inequalities the [0, 1] parameter box already guarantees (their restraint rows would never act)
    ineq = [(c, off) for c, off in ineq if off + sum(min(0.0, v) for v in c.values()) < -1e-12]
    g = np.zeros((len(ineq), n_par))
    g0 = np.zeros(len(ineq))
    for r, (coefs, off) in enumerate(ineq):
        for k, c in coefs.items():
            g[r, occ_col[k]] = c
        g0[r] = off
    return dataclasses.replace(
        ph,
        sites=sites,
        values=np.asarray(vals, dtype=float),
        names=names,
        kinds=kinds,
        frac_map=np.asarray(frac_map),
        frac_offset=np.asarray(frac_off),
        occ_map=np.asarray(occ_map),
        occ_offset=np.asarray(occ_off),
        b_map=np.asarray(b_map),
        atom_species=atom_species,
        atom_site=atom_site,
        occ_ineq=g,
        occ_ineq_offset=g0,
    )


def parameterize_disordered(
    structures: Sequence[Structure], model: OccupancyModel, names: Sequence[str] | None = None
) -> list[PhaseParameterization]:
    """Parameterise every phase with the occupancy model; raises for unknown labels or unsatisfiable input."""
    phases = []
    for i, s in enumerate(structures):
        check_site_totals(s)
        ph = parameterize(s, name=None if names is None else names[i])
        phases.append(apply_occupancy_model(ph, model) if not model.empty else ph)
    known = {site.label for ph in phases for site in ph.sites}
    unknown = sorted(model.labels() - known)
    if unknown:
        raise RefineError(
            f"unknown site label(s) {', '.join(unknown)}; the model has sites {', '.join(sorted(known))}"
        )
    if model.composition_restraint is not None:
        if len(phases) != 1:
            raise RefineError("a composition restraint needs exactly one phase")
        target = Composition(model.composition_restraint[0])
        present = {_element(sp) for sp in phases[0].atom_species}
        wanted = {el.symbol for el in target.elements}
        if present != wanted:
            missing = sorted(present - wanted)
            extra = sorted(wanted - present)
            detail = []
            if missing:
                detail.append(f"the model holds {', '.join(missing)} absent from {target.formula}")
            if extra:
                detail.append(f"{', '.join(extra)} of the restraint is on no site")
            raise RefineError("composition restraint cannot be satisfied: " + "; ".join(detail))
    return phases


class RestrainedModel:
    """Extra weighted residuals of a RietveldModel: occupancy inequalities (hinge) and composition restraint."""

    def __init__(self, rietveld: Any, composition_restraint: tuple[str, float] | None) -> None:
        self.model = rietveld
        self.terms: list[tuple[int, Tensor, Tensor]] = []  # (phase k, G (B,C,P), g0 (B,C))
        for k, st in enumerate(rietveld.stacked):
            c_max = max(ph.occ_ineq.shape[0] for ph in st.phases)
            if c_max == 0:
                continue
            p_max = st.values.shape[1]
            g = torch.zeros(len(st.phases), c_max, p_max, dtype=torch.float64)
            g0 = torch.zeros(len(st.phases), c_max, dtype=torch.float64)
            for b, ph in enumerate(st.phases):
                c = ph.occ_ineq.shape[0]
                if c:
                    g[b, :c, : ph.n_params] = torch.as_tensor(ph.occ_ineq)
                    g0[b, :c] = torch.as_tensor(ph.occ_ineq_offset)
            self.terms.append((k, g, g0))
        self.composition: tuple[Tensor, Tensor, float] | None = None
        if composition_restraint is not None:
            formula, weight = composition_restraint
            target = Composition(formula).fractional_composition
            elements = sorted(el.symbol for el in target.elements)
            st = rietveld.stacked[0]
            onehot = torch.zeros(len(st.phases), st.mask.shape[1], len(elements), dtype=torch.float64)
            for b, ph in enumerate(st.phases):
                for n, sp in enumerate(ph.atom_species):
                    onehot[b, n, elements.index(_element(sp))] = 1.0
            tgt = torch.as_tensor([target[e] for e in elements], dtype=torch.float64)
            self.composition = (onehot, tgt, float(weight))

    @property
    def active(self) -> bool:
        """True when the model adds restraint rows."""
        return bool(self.terms) or self.composition is not None

    def residuals(self, theta: Tensor, index: Tensor | None = None) -> Tensor:
        """(B', C_total) weighted restraint residuals for parameter rows theta (B',P)."""
        m = self.model
        out = []
        for k, g, g0 in self.terms:
            th = theta[:, m.layout.phase_param_slice(k)]
            gi, g0i = (g, g0) if index is None else (g[index], g0[index])
            val = torch.einsum("bcp,bp->bc", gi, th) + g0i
            out.append(INEQUALITY_WEIGHT * torch.clamp(-val, min=0.0))
        if self.composition is not None:
            onehot, tgt, weight = self.composition
            st = m.stacked[0] if index is None else m._stacked_rows(0, index)
            oh = onehot if index is None else onehot[index]
            occ = st.occupancies(theta[:, m.layout.phase_param_slice(0)]) * st.mask
            counts = torch.einsum("bn,bne->be", occ, oh)
            frac = counts / counts.sum(dim=1, keepdim=True).clamp_min(1e-12)
            out.append(weight * (frac - tgt))
        if not out:
            return theta.new_zeros(theta.shape[0], 0)
        return torch.cat(out, dim=1)


def _restrained_residuals(model: Any, restraints: RestrainedModel) -> Any:
    plain = model.residuals

    def residuals(theta: Tensor, index: Tensor | None = None) -> Tensor:
        return torch.cat([plain(theta, index), restraints.residuals(theta, index)], dim=1)

    return residuals


def _with_residual_jacobian(options: Any, restraints: RestrainedModel) -> Any:
    """Options whose Jacobian differentiates the (restrained) residual function itself.

    A pattern-only Jacobian (``jacobian="analytic"``) would miss the restraint rows, so models with restraints
    use forward-mode AD of the residuals ("batched").
    """
    if not restraints.active or getattr(options, "jacobian", "batched") in ("batched", "forward", "central"):
        return options
    return dataclasses.replace(options, jacobian="batched")


def refine_disordered(
    pattern: Any,
    structures: Structure | Sequence[Structure],
    occupancy: OccupancyModel,
    *,
    instrument: Any | None = None,
    radiation: Any | None = None,
    options: Any | None = None,
    names: Sequence[str] | None = None,
) -> Any:
    """Rietveld refinement (as :func:`~xrdsolve.refine.rietveld.refine`) with an occupancy model.

    Returns a RefinementResult whose sites carry occupancies {species: Value} under the input labels and
    whose ``occupancy_model`` attribute records the model. Raises RefineError / StructureError for unknown
    labels, site totals above 1 or an unsatisfiable composition restraint.
    """
    from .results import build_result
    from .rietveld import (
        RefineOptions,
        RietveldModel,
        _as_structures,
        _check_reflections_in_range,
        _instrument_for,
        _run,
    )

    t0 = time.perf_counter()
    opts = options or RefineOptions()
    structs = _as_structures(structures)
    for i, s in enumerate(structs):
        if len(s) == 0:
            raise StructureError(f"phase {i} has no atoms")
    inst, start = _instrument_for(pattern, instrument, radiation, opts.anomalous, opts.fcj_quadrature)
    phases = parameterize_disordered(structs, occupancy, names)
    model = RietveldModel(pattern, [[ph] for ph in phases], inst, opts)
    _check_reflections_in_range(model, raise_error=True)
    restraints = RestrainedModel(model, occupancy.composition_restraint)
    model.residuals = _restrained_residuals(model, restraints)  # type: ignore[method-assign]
    opts = _with_residual_jacobian(opts, restraints)
    model.options = opts
    theta, last, logs, dead = _run(model, opts, start)
    result = build_result(model, theta, last, logs[0], bool(dead[0]), 0, time.perf_counter() - t0)
    result.occupancy_model = occupancy.to_dict()
    return result


def refine_disordered_batch(
    patterns: Sequence[Any],
    structures: Sequence[Structure],
    occupancy: OccupancyModel,
    *,
    instrument: Any | None = None,
    radiation: Any | None = None,
    options: Any | None = None,
) -> list[Any]:
    """Refine structure i against pattern i for all i in ONE batched refinement (same 2θ grid for all).

    For benchmarks and randomised trials; returns one RefinementResult per pair, in input order.
    """
    from .results import build_result
    from .rietveld import RefineOptions, RietveldModel, _instrument_for, _run

    if len(patterns) != len(structures) or not patterns:
        raise RefineError("give one structure per pattern (and at least one)")
    t0 = time.perf_counter()
    opts = options or RefineOptions()
    inst, start = _instrument_for(patterns[0], instrument, radiation, opts.anomalous, opts.fcj_quadrature)
    phases = [parameterize_disordered([s], occupancy)[0] for s in structures]
    model = RietveldModel(patterns[0], [phases], inst, opts)
    grid = model.two_theta.numpy()
    ys, sigs = [], []
    for p in patterns:
        tt = np.asarray(p.two_theta, dtype=float)
        keep = (tt >= grid[0] - 1e-9) & (tt <= grid[-1] + 1e-9)
        if keep.sum() != grid.size or not np.allclose(tt[keep], grid):
            raise RefineError("every pattern of a batch needs the same 2θ grid")
        y = np.asarray(p.intensity, dtype=float)[keep]
        sig = np.sqrt(np.maximum(y, 1.0)) if p.sigma is None else np.asarray(p.sigma, dtype=float)[keep]
        ys.append(y)
        sigs.append(sig)
    model.set_observations(np.asarray(ys), np.asarray(sigs))
    restraints = RestrainedModel(model, occupancy.composition_restraint)
    model.residuals = _restrained_residuals(model, restraints)  # type: ignore[method-assign]
    opts = _with_residual_jacobian(opts, restraints)
    model.options = opts
    theta, last, logs, dead = _run(model, opts, start)
    elapsed = time.perf_counter() - t0
    out = []
    for b in range(model.batch_size):
        r = build_result(model, theta, last, logs[b], bool(dead[b]), b, elapsed / model.batch_size)
        r.occupancy_model = occupancy.to_dict()
        out.append(r)
    return out
