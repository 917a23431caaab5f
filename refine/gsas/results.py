"""RefinementResult from a refined GSAS-II project: values with esds, sites, curves, phase partials."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from ..errors import RefineError
from ..params import PhaseParameterization
from ..radiation import Geometry
from ..results import PhaseResult, RefinementResult, SiteResult, StageLog, Value
from .inputs import EIGHT_PI2, InstSetup, g2_ops
from .runtime import run_refinement

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- results
def sig_lookup(cov: dict[str, Any]) -> dict[str, float]:
    """Parameter name -> esd, for refined and constraint-dependent parameters."""
    sig = dict(zip(cov.get("varyList", []), cov.get("sig", []), strict=False))
    for k, v in cov.get("depSigDict", {}).items():
        sig.setdefault(k, float(v[1]) if isinstance(v, (list, tuple)) else float(v))
    return {k: float(v) for k, v in sig.items()}


def expand_site(structure_ops: tuple[np.ndarray, np.ndarray], xyz: np.ndarray) -> np.ndarray:
    """Distinct images (mod 1) of one fractional position under the operations."""
    rot, trans = structure_ops
    imgs = np.mod(np.einsum("kij,j->ki", rot, xyz) + trans, 1.0)
    out: list[np.ndarray] = []
    for p in imgs:
        if not any(np.all(np.abs((p - q) - np.rint(p - q)) < 1e-4) for q in out):
            out.append(p)
    return np.asarray(out)


def phase_result(
    g2phase: Any,
    hist: Any,
    sig: dict[str, float],
    ph0: PhaseParameterization,
    limits: tuple[float, float],
    scale: Value,
    inst_xy: dict[str, Value],
) -> PhaseResult:
    """PhaseResult of one GSAS-II phase (structure rebuilt from GSAS-II's cell, atoms and operations)."""
    from pymatgen.core.operations import SymmOp

    pid = g2phase.id
    cell, cell_esd = g2phase.get_cell_and_esd()
    names = ("a", "b", "c", "alpha", "beta", "gamma")
    keys = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
    lattice = {n: Value(float(cell[k]), float(cell_esd[k])) for n, k in zip(names, keys, strict=True)}
    volume = Value(float(cell["volume"]), float(cell_esd["volume"]))
    sgdata = g2phase.data["General"]["SGData"]
    ops = g2_ops(sgdata)
    by_label = {s.label: s for s in ph0.sites}
    sites: list[SiteResult] = []
    species: list[Any] = []
    coords: list[np.ndarray] = []
    grouped: dict[str, list[Any]] = {}
    for i, atom in enumerate(g2phase.atoms()):
        base = atom.label.split("_")[0] if atom.label not in by_label else atom.label
        grouped.setdefault(base, []).append((i, atom))
    for label, members in grouped.items():
        i0, a0 = members[0]
        xyz = np.asarray(a0.coordinates, dtype=float)
        xyz_v = tuple(
            Value(float(xyz[c]), sig.get(f"{pid}::dA{ax}:{i0}", sig.get(f"{pid}::A{ax}:{i0}", 0.0)))
            for c, ax in enumerate("xyz")
        )
        u_key = f"{pid}::AUiso:{i0}"
        b = Value(float(a0.uiso) * EIGHT_PI2, sig.get(u_key, 0.0) * EIGHT_PI2)
        occ = {a.element: Value(float(a.occupancy), sig.get(f"{pid}::Afrac:{i}", 0.0)) for i, a in members}
        site0 = by_label.get(label)
        images = expand_site(ops, xyz)
        sites.append(
            SiteResult(
                label=label,
                wyckoff=site0.wyckoff if site0 is not None else f"{len(images)}?",
                multiplicity=len(images),
                xyz=(xyz_v[0], xyz_v[1], xyz_v[2]),
                b_iso=b,
                occupancy=occ,
            )
        )
        comp = {a.element: float(a.occupancy) for _, a in members}
        for p in images:
            species.append(comp)
            coords.append(p)
    lat = Lattice.from_parameters(*(lattice[n].value for n in names))
    structure = Structure(lat, species, np.asarray(coords), site_properties={"label": labels_for(sites)})
    refl = hist.reflections().get(g2phase.name, {}).get("RefList", np.zeros((0, 6)))
    refl = np.asarray(refl, dtype=float)
    ok = (refl[:, 5] >= limits[0]) & (refl[:, 5] <= limits[1]) if len(refl) else np.zeros(0, dtype=bool)
    symops = [SymmOp.from_rotation_and_translation(r, t).as_xyz_str() for r, t in zip(*ops, strict=True)]
    key = f"{pid}:{hist.id}:Rf^2"  # R on F² = I (R_Bragg); ":Rf" is R on |F|
    r_bragg = float(hist.data["data"][0].get(key, float("nan"))) / 100.0
    result = PhaseResult(
        name=g2phase.name,
        formula=ph0.formula,
        spacegroup=ph0.spacegroup_symbol,
        spacegroup_number=ph0.spacegroup_number,
        crystal_system=ph0.crystal_system,
        lattice=lattice,
        volume=volume,
        scale=scale,
        weight_fraction=Value(1.0, 0.0),
        r_bragg=r_bragg,
        profile={**inst_xy, "po_ratio": Value(1.0, 0.0), **sample_broadening(g2phase, hist, sig)},
        sites=sites,
        structure=structure,
        ticks=refl[ok, 5] if len(refl) else np.zeros(0),
        tick_hkl=refl[ok, :3].astype(int) if len(refl) else np.zeros((0, 3), dtype=int),
        symops=symops,
    )
    return result


def sample_broadening(g2phase: Any, hist: Any, sig: dict[str, float]) -> dict[str, Value]:
    """GSAS-II's isotropic crystallite size (μm) and microstrain (×10⁶) of a phase, with esds."""
    hap = g2phase.data["Histograms"][hist.name]
    pre = f"{g2phase.id}:{hist.id}:"
    return {
        "size_um": Value(float(hap["Size"][1][0]), sig.get(pre + "Size;i", 0.0)),
        "microstrain": Value(float(hap["Mustrain"][1][0]), sig.get(pre + "Mustrain;i", 0.0)),
    }


def labels_for(sites: list[SiteResult]) -> list[str]:
    out: list[str] = []
    for s in sites:
        out += [s.label] * s.multiplicity
    return out


def weight_fractions(phases: list[PhaseResult], g2phases: list[Any], hist: Any, cov: dict[str, Any]) -> None:
    """Weight fractions W_k = M_k f_k / Σ M_j f_j (GSAS-II: cell mass M, phase fraction f) with esds from the
    covariance of the refined phase fractions."""
    mass = np.asarray([float(p.data["General"]["Mass"]) for p in g2phases])
    frac = np.asarray([ph.scale.value for ph in phases])
    total = float((mass * frac).sum())
    if total <= 0:
        return
    wf = mass * frac / total
    jac = (np.diag(mass) / total) - np.outer(wf, mass) / total  # dW_i / df_j
    vary = list(cov.get("varyList", []))
    covm = np.asarray(cov.get("covMatrix", np.zeros((0, 0))), dtype=float)
    idx = [
        vary.index(f"{p.id}:{hist.id}:Scale") if f"{p.id}:{hist.id}:Scale" in vary else -1 for p in g2phases
    ]
    cf = np.zeros((len(phases), len(phases)))
    for i, a in enumerate(idx):
        for j, b in enumerate(idx):
            if a >= 0 and b >= 0 and covm.shape[0] > max(a, b):
                cf[i, j] = covm[a, b]
    esd = np.sqrt(np.clip(np.diag(jac @ cf @ jac.T), 0.0, None))
    for ph, w, e in zip(phases, wf, esd, strict=True):
        ph.weight_fraction = Value(float(w), float(e))


def phase_partials(gpx: Any, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    """Each phase's calculated curve (no background) on the grid ``x`` (degrees 2θ), from GSAS-II's
    phase-partials file written by a zero-cycle run (as its GUI's "Compute partials")."""
    import pickle

    path = Path(gpx.filename).with_suffix(".partials")
    path.unlink(missing_ok=True)
    ctrl = gpx.data["Controls"]["data"]
    ctrl["max cyc"], ctrl["deriv type"], ctrl["PhasePartials"] = 0, "analytic Hessian", str(path)
    try:
        run_refinement(gpx)
    finally:
        gpx.data["Controls"]["data"]["PhasePartials"] = None
    found: dict[str, np.ndarray] = {}
    xs: np.ndarray | None = None
    with path.open("rb") as fh:
        try:
            pickle.load(fh)  # leading None
            pickle.load(fh)  # histogram id
            xs = np.asarray(pickle.load(fh), dtype=float)
            pickle.load(fh)  # background
            while True:
                name = pickle.load(fh)
                if name is None:
                    break
                found[str(name)] = np.asarray(pickle.load(fh), dtype=float)
        except EOFError:
            pass
    if xs is None:
        raise RefineError("GSAS-II wrote no phase partials")
    out = []
    for n in names:
        y = found.get(n)
        out.append(np.interp(x, xs, y) if y is not None and y.size == xs.size else np.full_like(x, np.nan))
    return out


def build_result(
    gpx: Any,
    hist: Any,
    g2phases: list[Any],
    params0: list[PhaseParameterization],
    setup: InstSetup,
    logs: list[StageLog],
    rvals: dict[str, Any],
    limits: tuple[float, float],
    seconds: float,
) -> RefinementResult:
    """RefinementResult from the refined GSAS-II project."""
    cov = gpx["Covariance"]["data"]
    sig = sig_lookup(cov)
    x, yobs, yweight, ycalc, ybkg = (np.asarray(a, dtype=float) for a in hist.data["data"][1][:5])
    sel = (x >= limits[0] - 1e-9) & (x <= limits[1] + 1e-9)
    x, yobs, yweight, ycalc, ybkg = x[sel], yobs[sel], yweight[sel], ycalc[sel], ybkg[sel]
    sigma = np.where(yweight > 0, 1.0 / np.sqrt(np.where(yweight > 0, yweight, 1.0)), np.inf)
    ip = hist.data["Instrument Parameters"][0]
    hid = hist.id

    def iv(name: str) -> Value:
        return Value(float(ip[name][1]), sig.get(f":{hid}:{name}", 0.0))

    sp = hist.data["Sample Parameters"]
    disp_key = "Shift" if setup.geometry is Geometry.BRAGG_BRENTANO else "DisplaceX"
    instrument = {
        "zero": iv("Zero"),
        "displacement": Value(float(sp[disp_key][0]), sig.get(f":{hid}:{disp_key}", 0.0)),
        "U": iv("U"),
        "V": iv("V"),
        "W": iv("W"),
        "asym": iv("SH/L") if "SH/L" in ip else Value(0.0, 0.0),
    }
    bg = hist.data["Background"][0]
    background = [
        Value(float(c), sig.get(f":{hid}:Back;{j}", 0.0)) for j, c in enumerate(bg[3 : 3 + int(bg[2])])
    ]
    hscale = Value(float(sp["Scale"][0]), sig.get(f":{hid}:Scale", 0.0))
    inst_xy = {"X": iv("X"), "Y": iv("Y")}
    phases: list[PhaseResult] = []
    single = len(g2phases) == 1
    for p, ph0 in zip(g2phases, params0, strict=True):
        hap = p.data["Histograms"][hist.name]
        scale = hscale if single else Value(float(hap["Scale"][0]), sig.get(f"{p.id}:{hid}:Scale", 0.0))
        phases.append(phase_result(p, hist, sig, ph0, limits, scale, inst_xy))
    if not single:
        weight_fractions(phases, g2phases, hist, cov)
    w = np.where(np.isfinite(sigma), 1.0 / sigma**2, 0.0)
    resid = yobs - ycalc
    chi2 = float((w * resid**2).sum())
    vary = list(cov.get("varyList", []))
    n_free = len(vary)
    n_obs = int(sel.sum())
    dof = max(n_obs - n_free, 1)
    rwp = math.sqrt(chi2 / float((w * yobs**2).sum()))
    rp = float(np.abs(resid).sum() / np.abs(yobs).sum())
    rexp = math.sqrt(dof / float((w * yobs**2).sum()))
    covm = np.asarray(cov.get("covMatrix", np.zeros((0, 0))), dtype=float)
    esds = np.asarray([sig.get(n, 0.0) for n in vary], dtype=float)
    if covm.shape == (n_free, n_free) and n_free:
        d = np.sqrt(np.clip(np.diag(covm), 1e-300, None))
        corr = covm / np.outer(d, d)
    else:
        corr = np.eye(n_free)
    status = logs[-1].status if logs else "not_refined"
    # last: the zero-cycle run for the phase partials replaces the project's covariance
    curves = [ycalc - ybkg] if single else phase_partials(gpx, [p.name for p in g2phases], x)
    return RefinementResult(
        phases=phases,
        instrument=instrument,
        background=background,
        two_theta=x,
        observed=yobs,
        sigma=sigma,
        calculated=ycalc,
        background_curve=ybkg,
        phase_curves=curves,
        rwp=rwp,
        rp=rp,
        rexp=rexp,
        chi2=chi2,
        gof=math.sqrt(chi2 / dof),
        n_obs=n_obs,
        n_params=n_free,
        converged=status == "converged",
        status=status,
        stages=logs,
        parameter_names=vary,
        values=np.asarray(cov.get("variables", []), dtype=float),
        esds=esds,
        correlation=corr,
        radiation=setup.radiation,
        seconds=seconds,
    )
