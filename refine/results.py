"""Refinement results: values with esds, agreement factors, curves, and the summary.json dictionary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from pymatgen.core import Structure

    from .radiation import Radiation


@dataclass(frozen=True)
class Value:
    """A refined (or fixed, esd 0) quantity with its estimated standard deviation, same unit."""

    value: float
    esd: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"value": _clean(self.value), "esd": _clean(self.esd)}


def _clean(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else float("nan")


@dataclass
class SiteResult:
    """One asymmetric-unit site: CIF label, Wyckoff position, fractional xyz, B_iso (Å²), occupancies."""

    label: str
    wyckoff: str
    multiplicity: int
    xyz: tuple[Value, Value, Value]
    b_iso: Value
    occupancy: dict[str, Value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "wyckoff": self.wyckoff,
            "multiplicity": self.multiplicity,
            "xyz": [v.to_dict() for v in self.xyz],
            "b_iso": self.b_iso.to_dict(),
            "occupancy": {el: v.to_dict() for el, v in self.occupancy.items()},
        }


@dataclass
class PhaseResult:
    """Refined phase: lattice (Å, degrees), volume (Å³), scale, weight fraction (0..1), R_Bragg (fraction)."""

    name: str
    formula: str
    spacegroup: str
    spacegroup_number: int
    crystal_system: str
    lattice: dict[str, Value]
    volume: Value
    scale: Value
    weight_fraction: Value
    r_bragg: float
    profile: dict[str, Value]
    sites: list[SiteResult]
    structure: Structure
    ticks: np.ndarray  # reflection positions, degrees 2θ (primary wavelength, with zero/displacement)
    tick_hkl: np.ndarray  # (R,3)
    symops: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "formula": self.formula,
            "spacegroup": self.spacegroup,
            "spacegroup_number": self.spacegroup_number,
            "crystal_system": self.crystal_system,
            "lattice": {k: v.to_dict() for k, v in self.lattice.items()},
            "volume": self.volume.to_dict(),
            "scale": self.scale.to_dict(),
            "weight_fraction": self.weight_fraction.to_dict(),
            "r_bragg": _clean(self.r_bragg),
            "profile": {k: v.to_dict() for k, v in self.profile.items()},
            "sites": [s.to_dict() for s in self.sites],
        }


@dataclass
class StageLog:
    """One stage of the staged strategy: what was refined and the Rwp (fraction) reached."""

    name: str
    groups: tuple[str, ...]
    rwp: float
    chi2: float
    iterations: int
    converged: bool
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": list(self.groups),
            "rwp": _clean(self.rwp),
            "chi2": _clean(self.chi2),
            "iterations": self.iterations,
            "converged": self.converged,
            "status": self.status,
        }


@dataclass
class RefinementResult:
    """Outcome of a Rietveld refinement of one pattern (one candidate model).

    Agreement factors are fractions (Rwp 0.0968 = 9.68 %). Curves are on the refined 2θ grid (degrees).
    ``parameter_names``/``values``/``esds`` list every refined parameter of the last stage; ``correlation``
    is their correlation matrix.
    """

    phases: list[PhaseResult]
    instrument: dict[str, Value]
    background: list[Value]
    two_theta: np.ndarray
    observed: np.ndarray
    sigma: np.ndarray
    calculated: np.ndarray
    background_curve: np.ndarray
    phase_curves: list[np.ndarray]
    rwp: float
    rp: float
    rexp: float
    chi2: float
    gof: float
    n_obs: int
    n_params: int
    converged: bool
    status: str
    stages: list[StageLog]
    parameter_names: list[str]
    values: np.ndarray
    esds: np.ndarray
    correlation: np.ndarray
    radiation: Radiation
    seconds: float = 0.0
    #: occupancy model of a disordered refinement (refine.disorder.OccupancyModel.to_dict()), else None
    occupancy_model: dict[str, Any] | None = None

    @property
    def difference(self) -> np.ndarray:
        """Observed − calculated."""
        return self.observed - self.calculated

    def to_summary_dict(self) -> dict[str, Any]:
        """The summary.json dictionary (refined quantities as {"value", "esd"}; R factors as fractions)."""
        return {
            "rwp": _clean(self.rwp),
            "rp": _clean(self.rp),
            "rexp": _clean(self.rexp),
            "chi2": _clean(self.chi2),
            "gof": _clean(self.gof),
            "converged": bool(self.converged),
            "status": self.status,
            "n_obs": self.n_obs,
            "n_params": self.n_params,
            "seconds": round(self.seconds, 3),
            "radiation": self.radiation.to_dict(),
            "two_theta_range": [float(self.two_theta[0]), float(self.two_theta[-1])],
            "instrument": {k: v.to_dict() for k, v in self.instrument.items()},
            "background": [v.to_dict() for v in self.background],
            "stages": [s.to_dict() for s in self.stages],
            "phases": [p.to_dict() for p in self.phases],
        }

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """The classic Rietveld plot (see :func:`xrdsolve.refine.plotting.plot_fit`)."""
        from .plotting import plot_fit

        return plot_fit(self, ax=ax, **kwargs)

    def to_cif(self, phase: int = 0) -> str:
        """Refined CIF text of one phase with esds."""
        from .cif_writer import phase_to_cif

        return phase_to_cif(self.phases[phase], self)

    def write_xye(self, path: str | Path) -> None:
        """Columns: 2θ (deg), observed, calculated, background, difference."""
        data = np.column_stack(
            [self.two_theta, self.observed, self.calculated, self.background_curve, self.difference]
        )
        header = "two_theta_deg observed calculated background difference"
        np.savetxt(path, data, fmt="%.6f", header=header)

    def _repr_html_(self) -> str:
        """Notebook view: statistics, phases, sites, instrument and the fit plot inline (refine.html_repr)."""
        from .html_repr import result_html

        return result_html(self)


# ---------------------------------------------------------------------------------------------- construction
def _cell_mass(structure: Structure) -> float:
    """Mass of the unit-cell contents (g/mol), occupancies included."""
    return float(structure.composition.weight)


def _r_bragg(model: Any, theta: Any, k: int, b: int, calc: np.ndarray, bg: np.ndarray) -> float:
    """R_Bragg of phase k of candidate b: Σ|I_obs − I_calc| / Σ I_obs over its reflections, with I_obs from
    Rietveld partitioning (each point's net observed intensity shared in proportion to the reflections'
    calculated profiles there). Each reflection's lines and sub-peaks are evaluated over their own windows
    only (the renderer's, :func:`~refine.rietveld_jacobian._shape_columns`), as sparse sums."""
    import torch

    from .physics.forward import flat_reflections
    from .rietveld_jacobian import _shape_columns, profile_peaks

    hkl, hmask = model.hkl[k]
    if not bool(hmask[b].any()):
        return float("nan")
    th = theta[b : b + 1]
    y, _, ws = model.observed_row(b)
    w = ws > 0
    denom = calc - bg
    ratio = np.where(w & (np.abs(denom) > 1e-12), (y - bg) / np.where(np.abs(denom) > 1e-12, denom, 1.0), 0.0)
    with torch.no_grad():
        crystals = model.crystals(th, k, torch.tensor([b]))
        fr = flat_reflections(
            crystals, model.instrument, model.profile(th, k), (hkl[b : b + 1], hmask[b : b + 1])
        )
        row, line = torch.nonzero(fr.valid, as_tuple=True)  # every line of every reflection
        if row.numel() == 0:
            return float("nan")
        peaks = profile_peaks(
            model, th, k, torch.zeros_like(row), fr.two_theta[row, line], fr.intensity[row, line]
        )
        reflection = row[peaks[5]]  # the reflection behind each rendered (sub-)peak
        n = int(fr.valid.shape[0])
        i_calc = torch.zeros(n, dtype=torch.float64)
        i_obs = torch.zeros(n, dtype=torch.float64)
        weight = torch.as_tensor(w, dtype=torch.float64)
        share = torch.as_tensor(ratio, dtype=torch.float64)
        area = peaks[2].to(torch.float64)
        for values, rows, counts, peak in _shape_columns(
            model.two_theta, 1, peaks[:5], model.instrument.window_fwhm
        ):
            column = torch.repeat_interleave(peak, counts)  # the peak of each stored value
            profile = values[0].to(torch.float64) * area[column]  # ∂y/∂A · A: the peak's calculated counts
            owner = reflection[column]
            i_calc.index_add_(0, owner, profile * weight[rows])
            i_obs.index_add_(0, owner, profile * share[rows])
    keep = i_calc > 0
    total = float(i_obs[keep].abs().sum())
    return float((i_obs[keep] - i_calc[keep]).abs().sum()) / total if total > 0 else float("nan")


def build_result(
    model: Any, theta: Any, last: Any, logs: list[StageLog], dead: bool, b: int, seconds: float
) -> RefinementResult:
    """Assemble the RefinementResult of candidate b from the final parameter vector and LM covariance."""
    import torch

    from .params import lattice_parameters
    from .physics import bragg_intensities, peak_shift

    lay = model.layout
    th = theta[b : b + 1]
    names = lay.names[b]
    p_total = lay.total
    if last is not None and model.options.esds:
        cov = last.covariance[b].numpy()
        esd = last.esd[b].numpy()
        corr = last.correlation[b].numpy()
        free_mask = (last.esd[b] > 0).numpy().astype(bool)
    else:  # not refined, or esds not computed (RefineOptions.esds: NaN)
        nothing = 0.0 if last is None else np.nan
        cov = np.full((p_total, p_total), nothing)
        esd = np.full(p_total, nothing)
        corr = np.eye(p_total)
        free_mask = np.zeros(p_total, dtype=bool)
    if last is not None:
        converged = bool(last.converged[b]) and not dead
        status = "diverged" if dead else last.status(b)
        n_free = int(last.n_free[b])
    else:
        converged, status, n_free = False, "not_refined", 0
    vals = th[0].detach().numpy()

    row = torch.tensor([b])
    stats = model.statistics(th, row)
    calc = stats["calc"][0].numpy()
    with torch.no_grad():
        bg = model.background(th)[0].numpy()
        phase_curves = [p[0].numpy() for p in model.phase_patterns(th, row)]
    y, sig_b, ws = model.observed_row(b)
    w = ws**2
    n_obs = model.n_obs
    chi2 = float(stats["chi2"][0])
    dof = max(n_obs - n_free, 1)
    rexp = math.sqrt(dof / float((w * y * y).sum()))
    gof = math.sqrt(chi2 / dof)

    def v(j: int) -> Value:
        return Value(float(vals[j]), float(esd[j]))

    instrument = {n: v(lay.global_index(n)) for n in ("zero", "displacement", "U", "V", "W", "asym")}
    background = [v(j) for j in range(lay.bg_slice.start, lay.bg_slice.stop)]

    # weight fractions (Hill & Howard: W_k ∝ S_k·(ZMV)_k with this model's intensity scale)
    phases_out: list[PhaseResult] = []
    zmv = []
    structures = []
    for k in range(model.n_phases):
        ph = model.stacked[k].phases[b]
        sl = lay.phase_param_slice(k)
        pv = vals[sl][: ph.n_params]
        s = ph.to_structure(pv)
        structures.append(s)
        zmv.append(_cell_mass(s) * s.lattice.volume)
    scales = np.asarray([vals[lay.phase_profile_index(k, "scale")] for k in range(model.n_phases)])
    s_idx = [lay.phase_profile_index(k, "scale") for k in range(model.n_phases)]
    a = scales * np.asarray(zmv)
    wf = a / a.sum() if a.sum() > 0 else np.full(len(a), float("nan"))
    # esd of weight fractions from the scale covariance
    jac_w = np.zeros((len(a), len(a)))
    tot = a.sum()
    for i in range(len(a)):
        for j in range(len(a)):
            jac_w[i, j] = (float(i == j) * zmv[j] / tot - a[i] * zmv[j] / tot**2) if tot > 0 else 0.0
    cov_s = cov[np.ix_(s_idx, s_idx)]
    wf_esd = np.sqrt(np.clip(np.diag(jac_w @ cov_s @ jac_w.T), 0, None))

    for k in range(model.n_phases):
        ph = model.stacked[k].phases[b]
        sl = lay.phase_param_slice(k)
        off = sl.start
        lat_idx = ph.block("lattice")
        # lattice parameters and volume with esds (Jacobian of a, b, c, α, β, γ, V w.r.t. metric coefficients)
        pv_t = torch.as_tensor(vals[sl][: ph.n_params], dtype=torch.float64)

        def cell_fn(
            lat_vals: torch.Tensor, pv_t: torch.Tensor = pv_t, ph: Any = ph, lat_idx: Any = lat_idx
        ) -> Any:
            full = pv_t.clone()
            full[lat_idx] = lat_vals
            m = ph.lattice_matrix(full)
            return torch.cat([lattice_parameters(m), torch.linalg.det(m).abs()[None]])

        lat_vals = pv_t[lat_idx]
        cell = cell_fn(lat_vals).numpy()
        jac = torch.autograd.functional.jacobian(cell_fn, lat_vals).numpy()
        gi = off + lat_idx
        cov_cell = jac @ cov[np.ix_(gi, gi)] @ jac.T
        cell_esd = np.sqrt(np.clip(np.diag(cov_cell), 0, None))
        lattice = {
            n: Value(float(cell[i]), float(cell_esd[i]))
            for i, n in enumerate(("a", "b", "c", "alpha", "beta", "gamma"))
        }
        volume = Value(float(cell[6]), float(cell_esd[6]))
        # sites
        xyz_idx = ph.block("xyz")
        b_idx = ph.block("biso")
        sites = []
        kx = 0
        for s_i, site in enumerate(ph.sites):
            n = site.n_free_xyz
            pidx = xyz_idx[kx : kx + n]
            kx += n
            pvals = vals[off + pidx] if n else np.zeros(0)
            xyz = site.x0 + site.basis @ pvals
            c = cov[np.ix_(off + pidx, off + pidx)] if n else np.zeros((0, 0))
            xyz_cov = site.basis @ c @ site.basis.T if n else np.zeros((3, 3))
            xyz_esd = np.sqrt(np.clip(np.diag(xyz_cov), 0, None))
            occ: dict[str, Value] = {}
            # occupancy = row·p + offset for every species (mixed sites, vacancies, shared exchange parameters)
            p_sl = np.arange(off, off + ph.n_params)
            cov_p = cov[np.ix_(p_sl, p_sl)]
            for sp, orow, ooff in ph.site_occupancy_rows(s_i):
                o_esd = math.sqrt(max(float(orow @ cov_p @ orow), 0.0))
                occ[sp] = Value(float(orow @ vals[p_sl] + ooff), o_esd)
            bj = off + b_idx[s_i]
            sites.append(
                SiteResult(
                    label=site.label,
                    wyckoff=site.wyckoff,
                    multiplicity=site.multiplicity,
                    xyz=(
                        Value(float(xyz[0]), float(xyz_esd[0])),
                        Value(float(xyz[1]), float(xyz_esd[1])),
                        Value(float(xyz[2]), float(xyz_esd[2])),
                    ),
                    b_iso=v(bj),
                    occupancy=occ,
                )
            )
        # reflection ticks (primary wavelength, including zero/displacement shift)
        with torch.no_grad():
            hkl_b = (model.hkl[k][0][b : b + 1], model.hkl[k][1][b : b + 1])
            refl = bragg_intensities(
                model.crystals(th, k, row), model.instrument, None, hkl_b, float(model.two_theta[-1])
            )
            prof = model.profile(th, k)
            lam = model.instrument.radiation
            li = int(np.argmax(lam.weights))
            tt = refl.two_theta[0, :, li]
            tt_obs = (tt + peak_shift(tt[None], prof, model.instrument)[0]).numpy()
            ok = (
                refl.valid[0, :, li].numpy()
                & (tt_obs >= model.two_theta[0].item())
                & (tt_obs <= model.two_theta[-1].item())
            )
        ticks = tt_obs[ok]
        tick_hkl = refl.hkl[0].numpy()[ok]
        r_bragg = _r_bragg(model, theta, k, b, calc, bg) if model.options.r_bragg else float("nan")
        profile = {n: v(lay.phase_profile_index(k, n)) for n in ("X", "Y", "po_ratio")}
        from pymatgen.core.operations import SymmOp

        symops = [
            SymmOp.from_rotation_and_translation(r, t).as_xyz_str()
            for r, t in zip(ph.symops_rot, ph.symops_trans, strict=True)
        ]
        phases_out.append(
            PhaseResult(
                name=ph.name,
                formula=ph.formula,
                spacegroup=ph.spacegroup_symbol,
                spacegroup_number=ph.spacegroup_number,
                crystal_system=ph.crystal_system,
                lattice=lattice,
                volume=volume,
                scale=v(s_idx[k]),
                weight_fraction=Value(float(wf[k]), float(wf_esd[k])),
                r_bragg=r_bragg,
                profile=profile,
                sites=sites,
                structure=structures[k],
                ticks=ticks,
                tick_hkl=tick_hkl,
                symops=symops,
            )
        )
    sel = np.nonzero(free_mask)[0]
    return RefinementResult(
        phases=phases_out,
        instrument=instrument,
        background=background,
        two_theta=model.two_theta.numpy(),
        observed=y,
        sigma=sig_b,
        calculated=calc,
        background_curve=bg,
        phase_curves=phase_curves,
        rwp=float(stats["rwp"][0]),
        rp=float(stats["rp"][0]),
        rexp=rexp,
        chi2=chi2,
        gof=gof,
        n_obs=n_obs,
        n_params=n_free,
        converged=converged,
        status=status,
        stages=logs,
        parameter_names=[names[j] for j in sel],
        values=vals[sel],
        esds=esd[sel],
        correlation=corr[np.ix_(sel, sel)],
        radiation=model.instrument.radiation,
        seconds=seconds,
    )
