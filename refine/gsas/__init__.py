"""Optional GSAS-II backend: the same staged Rietveld refinement run through GSAS-II's scripting API.

``refine_gsas(pattern, structures)`` writes the pattern (.xye), an instrument file (.instprm) and one CIF per
phase into a work folder, builds a GSAS-II project with GSASIIscriptable, refines it stage by stage with the
same parameter groups as :data:`xrdsolve.refine.rietveld.DEFAULT_STRATEGY`, and returns the same
:class:`~xrdsolve.refine.results.RefinementResult` as our engine (lattice, sites, R factors as fractions,
curves on the refined 2θ grid), so ``.plot()``, ``.to_cif()`` and summaries work unchanged.

GSAS-II is not a dependency: it is imported lazily, and :func:`refine_gsas` raises
:class:`~xrdsolve.refine.errors.RefineError` when it is not installed. Units follow GSAS-II and our engine:
zero in degrees 2θ, sample displacement in μm, U V W in centideg², X Y in centideg, B_iso in Å².
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from ..errors import RefineError, StructureError
from ..params import PhaseParameterization, parameterize
from ..protocols import PatternLike
from ..radiation import Geometry, Radiation
from ..results import RefinementResult
from ..rietveld import DEFAULT_STRATEGY, Stage
from .inputs import g2_setting, instrument_file, phase_cif, unique_site_labels, write_xye
from .results import build_result
from .runtime import gsas_available, load_scriptable, quiet
from .stages import GROUPS, hold_polar_origin, initial_scale, no_sample_broadening, run_stages

log = logging.getLogger(__name__)

#: default GSAS-II strategy: ours without the occupancy stage (GSAS-II would refine every site's occupancy)
GSAS_STRATEGY: tuple[Stage, ...] = tuple(s for s in DEFAULT_STRATEGY if "occ" not in s.groups)


def gsas_recipe(positions: bool = False, sample_shift: bool = True, cycles: int = 10) -> tuple[Stage, ...]:
    """The staged recipe of GSAS-II's validation fits (G2_validation.json beside each real case), in our
    group names: scale + background, + zero, + cell, + profile, + sample shift, + atoms (U, or X U with
    ``positions``), ``cycles`` GSAS-II cycles each. Use with ``fix=("asym",)`` (SH/L held at the
    instrument file's value), ``profile=`` the case's "prof" ("sample" or "instrument" with
    ``sample_broadening=True``) to reproduce those fits."""
    stages = [
        Stage("scale+background", ("scale", "background"), cycles),
        Stage("+zero", ("zero",), cycles),
        Stage("+cell", ("lattice",), cycles),
        Stage("+profile", ("profile",), cycles),
    ]
    if sample_shift:
        stages.append(Stage("+sample shift", ("displacement",), cycles))
    stages.append(Stage("+atoms", ("xyz", "biso") if positions else ("biso",), cycles))
    return tuple(stages)


# ---------------------------------------------------------------------------------------------- refine
def refine_gsas(
    pattern: PatternLike,
    structures: Structure | Sequence[Structure],
    instrument: Any | None = None,
    radiation: Radiation | str | float | None = None,
    stages: Sequence[Stage] | None = None,
    workdir: str | Path | None = None,
    *,
    two_theta_min: float | None = None,
    two_theta_max: float | None = None,
    n_background: int = 6,
    fix: Iterable[str] = (),
    refine_displacement: bool | None = None,
    names: Sequence[str] | None = None,
    profile: str = "instrument",
    sample_broadening: bool = False,
) -> RefinementResult:
    """Rietveld refinement of ``structures`` against ``pattern`` with GSAS-II (GSASIIscriptable).

    ``stages``: our :class:`~xrdsolve.refine.rietveld.Stage` list (cumulative parameter groups: scale,
    background, zero, displacement, lattice, profile, asym, po, xyz, biso, occ; ``max_iter`` = GSAS-II
    cycles); default :data:`GSAS_STRATEGY`. ``fix``: groups held in every stage (e.g. ``"asym"``).
    ``profile``: what the "profile" group refines: ``"instrument"`` (U V W X Y, GSAS-II's sample
    broadening switched off: our engine's peak model) or ``"sample"`` (GSAS-II's isotropic crystallite size
    and microstrain from its defaults, 1 μm and 1000, with the instrument's U V W X Y held: the recipe of
    GSAS-II's tutorials and of the G2_validation.json fits). ``sample_broadening``: keep GSAS-II's default
    crystallite size and microstrain (held) with ``profile="instrument"``, as GSAS-II does by default; the
    G2_validation.json fits of cases with cfg "prof": "instr" were made so (see :func:`gsas_recipe`).
    ``instrument``: an InstrumentParameters from a .prm/.instprm file (start U V W X Y, zero, SH/L,
    polarisation, wavelengths) or None (W from the data). ``workdir``: where the GSAS-II project (.gpx) and
    its input files are written (default: a temporary folder, removed afterwards). 2θ limits in degrees.
    Raises RefineError when GSAS-II is missing, the data hold NaN, or a phase has no reflection in range;
    StructureError for a structure without atoms.
    """
    t0 = time.perf_counter()
    structs = [structures] if isinstance(structures, Structure) else list(structures)
    if not structs:
        raise StructureError("no structures given")
    for i, s in enumerate(structs):
        if len(s) == 0:
            raise StructureError(f"phase {i} has no atoms")
    tt = np.asarray(pattern.two_theta, dtype=float)
    y = np.asarray(pattern.intensity, dtype=float)
    sig_in = getattr(pattern, "sigma", None)
    sig = np.sqrt(np.maximum(y, 1.0)) if sig_in is None else np.asarray(sig_in, dtype=float)
    if not (np.all(np.isfinite(tt)) and np.all(np.isfinite(y)) and np.all(np.isfinite(sig))):
        raise RefineError("the pattern holds non-finite values (NaN or inf) in 2θ, intensity or σ")
    sig = np.where(sig > 0, sig, np.sqrt(np.maximum(np.abs(y), 1.0)))
    lo = float(tt[0]) if two_theta_min is None else max(float(two_theta_min), float(tt[0]))
    hi = float(tt[-1]) if two_theta_max is None else min(float(two_theta_max), float(tt[-1]))
    if hi <= lo:
        raise RefineError(f"empty 2θ range {lo:.3f}..{hi:.3f} degrees")
    if profile not in ("instrument", "sample"):
        raise RefineError(f"profile must be 'instrument' or 'sample', not {profile!r}")
    setup = dataclasses.replace(
        instrument_file(pattern, instrument, radiation, refine_displacement), profile=profile
    )
    plan = list(stages) if stages is not None else list(GSAS_STRATEGY)
    held = set(fix)
    unknown = ({g for st in plan for g in st.groups} | held) - GROUPS
    if unknown:
        raise RefineError(f"unknown parameter group(s) for the GSAS-II backend: {sorted(unknown)}")
    g2sc = load_scriptable()

    tmp = tempfile.TemporaryDirectory(prefix="xrdsolve-gsas-") if workdir is None else None
    folder = Path(tmp.name if tmp is not None else workdir)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        write_xye(folder / "pattern.xye", tt, y, sig)
        (folder / "instrument.instprm").write_text(setup.text)
        params0: list[PhaseParameterization] = []
        cifs: list[Path] = []
        for i, s in enumerate(structs):
            s2, symbol = g2_setting(s)
            name = names[i] if names is not None else f"phase{i}_{s2.composition.reduced_formula}"
            ph = parameterize(s2, name=name)
            unique_site_labels(ph)
            params0.append(ph)
            path = folder / f"phase{i}.cif"
            path.write_text(phase_cif(f"phase{i}", s2, symbol, ph))
            cifs.append(path)
        with quiet():
            gpx = g2sc.G2Project(newgpx=str(folder / "xrdsolve.gpx"))
            hist = gpx.add_powder_histogram(
                str(folder / "pattern.xye"), str(folder / "instrument.instprm"), fmthint="xye"
            )
            g2phases = [
                gpx.add_phase(str(c), phasename=ph.name, histograms=[hist])
                for c, ph in zip(cifs, params0, strict=True)
            ]
        hist.data["Sample Parameters"]["Type"] = (
            "Bragg-Brentano" if setup.geometry is Geometry.BRAGG_BRENTANO else "Debye-Scherrer"
        )
        hist.data["Sample Parameters"]["Gonio. radius"] = setup.goniometer_radius
        hist.set_refinements(
            {
                "Limits": [lo, hi],
                "Background": {"type": "chebyschev-1", "no. coeffs": int(n_background), "refine": False},
            }
        )
        hist.clear_refinements({"Sample Parameters": ["Scale"]})
        for p in g2phases:
            for atom in p.atoms():
                atom.refinement_flags = ""
            if len(g2phases) == 1:
                p.set_HAP_refinements({"Scale": False}, histograms=[hist])
            if setup.profile == "instrument" and not sample_broadening:
                no_sample_broadening(p.data["Histograms"][hist.name])
        if any("xyz" in st.groups for st in plan) and "xyz" not in held:
            hold_polar_origin(gpx, g2phases, params0)
            hist, g2phases = gpx.histogram(0), [gpx.phase(p.name) for p in g2phases]
        hist, g2phases = initial_scale(gpx, g2phases)
        hist, g2phases, logs, rvals = run_stages(gpx, hist, g2phases, plan, held, setup, (lo, hi))
        return build_result(
            gpx, hist, g2phases, params0, setup, logs, rvals, (lo, hi), time.perf_counter() - t0
        )
    finally:
        if tmp is not None:
            tmp.cleanup()


__all__ = ["GSAS_STRATEGY", "gsas_available", "gsas_recipe", "refine_gsas"]
