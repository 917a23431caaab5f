"""Staged GSAS-II refinement: our parameter groups as GSAS-II refinement flags, start values, stage loop."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import RefineError
from ..params import PhaseParameterization
from ..radiation import Geometry
from ..results import StageLog
from ..rietveld import Stage, polar_fixed_parameters
from .inputs import InstSetup
from .runtime import quiet, run_refinement

log = logging.getLogger(__name__)

#: SH/L put back when GSAS-II runs it negative (our engine bounds it at 0)
ASYM_MIN = 0.0005
#: smallest starting Lorentzian X, Y (centidegrees), as our engine

#: crystallite size (μm) standing for "no size broadening" (Lorentzian FWHM ~1e-5 degrees at Cu Kα)
SIZE_NONE_UM = 1.0e4
GROUPS = {
    "scale",
    "background",
    "zero",
    "displacement",
    "lattice",
    "profile",
    "profile_w",
    "profile_wxy",
    "asym",
    "po",
    "xyz",
    "biso",
    "occ",
}


# ---------------------------------------------------------------------------------------------- flags
def apply_stage(
    groups: set[str],
    hist: Any,
    phases: list[Any],
    setup: InstSetup,
) -> None:
    """Switch on GSAS-II refinement flags for the (cumulative) parameter groups of a stage."""
    unknown = groups - GROUPS
    if unknown:
        raise RefineError(f"unknown parameter group(s) for the GSAS-II backend: {sorted(unknown)}")
    inst: list[str] = []
    sample: list[str] = []
    if "scale" in groups:
        if len(phases) == 1:
            sample.append("Scale")
        else:
            for p in phases:
                p.set_HAP_refinements({"Scale": True}, histograms=[hist])
    if "background" in groups:
        hist.set_refinements({"Background": {"refine": True}})
    if "zero" in groups:
        inst.append("Zero")
    if "profile" in groups and setup.profile == "instrument":
        inst += ["U", "V", "W", "X", "Y"]
    if "profile" in groups and setup.profile == "sample":
        for p in phases:
            p.set_HAP_refinements(
                {
                    "Size": {"type": "isotropic", "refine": True},
                    "Mustrain": {"type": "isotropic", "refine": True},
                },
                histograms=[hist],
            )
    if "profile_w" in groups:
        inst += ["W"]
    if "profile_wxy" in groups:
        inst += ["W", "X", "Y"]
    if "asym" in groups:
        inst.append("SH/L")
    if "displacement" in groups and setup.refine_displacement:
        sample.append("Shift" if setup.geometry is Geometry.BRAGG_BRENTANO else "DisplaceX")
    if inst:
        hist.set_refinements({"Instrument Parameters": inst})
    if sample:
        hist.set_refinements({"Sample Parameters": sample})
    for p in phases:
        if "lattice" in groups:
            p.set_refinements({"Cell": True})
        if "po" in groups:
            p.set_HAP_refinements({"Pref.Ori.": True}, histograms=[hist])
        flags = ("X" if "xyz" in groups else "") + ("U" if "biso" in groups else "")
        for atom in p.atoms():
            f = flags + ("F" if "occ" in groups and atom.occupancy < 0.999 else "")
            atom.refinement_flags = f


def release(groups: Iterable[str], hist: Any, phases: list[Any], setup: InstSetup) -> None:
    """Clear the flags of held groups (``fix``) after a stage switched them on."""
    g = set(groups)
    if "zero" in g:
        hist.clear_refinements({"Instrument Parameters": ["Zero"]})
    if "asym" in g:
        hist.clear_refinements({"Instrument Parameters": ["SH/L"]})
    if "profile" in g:
        hist.clear_refinements({"Instrument Parameters": ["U", "V", "W", "X", "Y"]})
        for p in phases:
            p.clear_HAP_refinements(
                {"Size": {"type": "isotropic"}, "Mustrain": {"type": "isotropic"}}, histograms=[hist]
            )
    if "displacement" in g:
        key = "Shift" if setup.geometry is Geometry.BRAGG_BRENTANO else "DisplaceX"
        hist.clear_refinements({"Sample Parameters": [key]})
    if "lattice" in g:
        for p in phases:
            p.clear_refinements({"Cell": True})


def hold_polar_origin(gpx: Any, g2phases: list[Any], params0: list[PhaseParameterization]) -> list[str]:
    """Hold one coordinate per polar axis (origin not fixed by the space group), as our engine does, so the
    normal matrix is not singular when positions are refined; returns the held GSAS-II variable names."""
    held: list[str] = []
    for p, ph in zip(g2phases, params0, strict=True):
        chosen = set(polar_fixed_parameters(ph))
        if not chosen:
            continue
        xyz_idx = ph.block("xyz")
        pos, row = 0, 0
        for site in ph.sites:
            for j, piv in enumerate(site.pivots):
                if int(xyz_idx[pos + j]) in chosen:
                    held.append(f"{p.id}::dA{'xyz'[piv]}:{row}")
            pos += site.n_free_xyz
            row += len(site.species)
    if held:
        with quiet():
            gpx.add_HoldConstr(held)
        log.info("GSAS-II backend: polar origin fixed by holding %s", ", ".join(held))
    return held


def no_sample_broadening(hap: dict[str, Any]) -> None:
    """Switch off GSAS-II's default sample broadening (1 μm crystallites, 1000 microstrain) so the peak
    shape is the instrument's U V W X Y alone, as in our engine."""
    hap["Size"][0] = "isotropic"
    hap["Size"][1][0] = SIZE_NONE_UM
    hap["Size"][2][0] = False
    hap["Mustrain"][0] = "isotropic"
    hap["Mustrain"][1][0] = 0.0
    hap["Mustrain"][2][0] = False


def calculate(gpx: Any, g2phases: list[Any]) -> tuple[Any, list[Any]]:
    """A zero-cycle GSAS-II run (curves at the current parameters); the reloaded histogram and phases."""
    gpx.set_Controls("cycles", 0)
    run_refinement(gpx)
    return gpx.histogram(0), [gpx.phase(p.name) for p in g2phases]


def initial_scale(gpx: Any, g2phases: list[Any]) -> tuple[Any, list[Any]]:
    """Scale(s) and constant background from a weighted linear least-squares fit of the start model.

    GSAS-II starts every scale at 1, which can be many orders of magnitude off for counts-scaled data; its
    first least-squares stage then runs the scale to zero. The same linear start as our engine avoids that.
    """
    hist, g2phases = calculate(gpx, g2phases)
    x, yobs, yweight, ycalc, ybkg = (np.asarray(a, dtype=float) for a in hist.data["data"][1][:5])
    lo, hi = hist.data["Limits"][1]
    sel = (x >= lo) & (x <= hi) & (yweight > 0)
    sp = hist.data["Sample Parameters"]
    s0 = float(sp["Scale"][0])
    pat = (ycalc - ybkg)[sel] / max(s0, 1e-300)
    y, w = yobs[sel], yweight[sel]
    bg0 = float(np.percentile(y, 10))
    den = float((w * pat * pat).sum())
    if den <= 0 or not math.isfinite(den):
        return hist, g2phases
    s_new = max(float((w * (y - bg0) * pat).sum()) / den, 1e-12)
    sp["Scale"][0] = s0 * s_new
    bkg = hist.data["Background"][0]
    bkg[3] = bg0
    for j in range(4, 3 + int(bkg[2])):
        bkg[j] = 0.0
    log.debug("GSAS-II start: scale %.4g, background %.4g", s0 * s_new, bg0)
    return hist, g2phases


def run_stages(
    gpx: Any,
    hist: Any,
    g2phases: list[Any],
    plan: Sequence[Stage],
    held: set[str],
    setup: InstSetup,
    limits: tuple[float, float],
) -> tuple[Any, list[Any], list[StageLog], dict[str, Any]]:
    """Refine stage by stage (cumulative groups); a negative SH/L is reset to :data:`ASYM_MIN` and held.

    StageLog.iterations is -1: GSAS-II does not report the number of cycles it used.
    """
    logs: list[StageLog] = []
    groups: set[str] = set()
    rvals: dict[str, Any] = {}
    held = set(held)
    for stage in plan:
        first_profile = "profile" in stage.groups and "profile" not in groups | held
        if setup.profile == "instrument" and setup.rough_start and first_profile:
            # GSAS-II's U V W X Y from a rough start fall into a false minimum (U large, W < 0); first the
            # Gaussian width W alone, then W X Y, with the groups refined so far
            for pre in ("profile_w", "profile_wxy"):
                hist, g2phases = refine_once(gpx, (groups | {pre}) - held, held, hist, g2phases, setup, 10)
        groups |= set(stage.groups)
        hist, g2phases = refine_once(gpx, groups - held, held, hist, g2phases, setup, stage.max_iter)
        rvals = dict(gpx["Covariance"]["data"].get("Rvals", {}))
        rwp = float(hist.get_wR()) / 100.0
        status = stage_status(rvals, rwp, hist, g2phases)
        logs.append(
            StageLog(
                name=stage.name,
                groups=tuple(sorted(groups - held)),
                rwp=rwp,
                chi2=float(rvals.get("chisq", float("nan"))),
                iterations=-1,
                converged=status == "converged",
                status=status,
            )
        )
        log.info("GSAS-II stage %s: Rwp %.4f (%s)", stage.name, rwp, status)
        for p in g2phases:
            nref = hist.data["data"][0].get(f"{p.id}:{hist.id}:Nref", None)
            if nref is not None and int(nref) == 0:
                raise RefineError(
                    f"phase {p.name} has no reflections between {limits[0]:.3f} and {limits[1]:.3f} degrees 2θ"
                )
        if status == "diverged":
            break
        ip = hist.data["Instrument Parameters"][0]
        if "SH/L" in ip and float(ip["SH/L"][1]) < 0.0:
            log.info("GSAS-II backend: SH/L went negative (%.4g); held at %.4g", ip["SH/L"][1], ASYM_MIN)
            ip["SH/L"][1] = ASYM_MIN
            held.add("asym")
    return hist, g2phases, logs, rvals


def refine_once(
    gpx: Any, groups: set[str], held: set[str], hist: Any, g2phases: list[Any], setup: InstSetup, cycles: int
) -> tuple[Any, list[Any]]:
    """Flag ``groups``, clear ``held``, run GSAS-II for at most ``cycles``; the reloaded histogram and phases."""
    apply_stage(groups, hist, g2phases, setup)
    release(held, hist, g2phases, setup)
    gpx.set_Controls("cycles", int(cycles))
    run_refinement(gpx)
    return gpx.histogram(0), [gpx.phase(p.name) for p in g2phases]


def stage_status(rvals: dict[str, Any], rwp: float, hist: Any, g2phases: list[Any]) -> str:
    """'converged', 'max_iter', 'singular' (GSAS-II's SVD dropped directions of the normal matrix) or
    'diverged' (aborted, non-finite or ~100 % Rwp, scale run to ≤ 0)."""
    scales = [float(hist.data["Sample Parameters"]["Scale"][0])]
    if len(g2phases) > 1:
        scales = [float(p.data["Histograms"][hist.name]["Scale"][0]) for p in g2phases]
    if rvals.get("Aborted", False) or not math.isfinite(rwp) or rwp > 0.99 or max(scales) <= 0.0:
        return "diverged"
    if int(rvals.get("SVD0", 0) or 0) > 0:  # GSAS-II dropped zero singular values: parameters undetermined
        return "singular"
    return "converged" if rvals.get("converged", False) else "max_iter"
