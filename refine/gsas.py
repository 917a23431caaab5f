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

import contextlib
import dataclasses
import functools
import io
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from .errors import RefineError, StructureError
from .params import PhaseParameterization, parameterize
from .protocols import PatternLike
from .radiation import Geometry, Probe, Radiation
from .results import PhaseResult, RefinementResult, SiteResult, StageLog, Value
from .rietveld import DEFAULT_STRATEGY, Stage, estimate_fwhm

log = logging.getLogger(__name__)

#: default GSAS-II strategy: ours without the occupancy stage (GSAS-II would refine every site's occupancy)
GSAS_STRATEGY: tuple[Stage, ...] = tuple(s for s in DEFAULT_STRATEGY if "occ" not in s.groups)
_EIGHT_PI2 = 8.0 * math.pi**2
#: SH/L put back when GSAS-II runs it negative (our engine bounds it at 0)
ASYM_MIN = 0.0005
#: smallest starting Lorentzian X, Y (centidegrees), as our engine
LORENTZ_START = 0.05
#: crystallite size (μm) standing for "no size broadening" (Lorentzian FWHM ~1e-5 degrees at Cu Kα)
SIZE_NONE_UM = 1.0e4
_GROUPS = {
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


@functools.cache
def gsas_available() -> bool:
    """True when GSAS-II's scripting module (``GSASII.GSASIIscriptable``) can be imported."""
    try:
        with _quiet():
            import GSASII.GSASIIscriptable  # type: ignore[import-not-found]  # noqa: F401
    except Exception as exc:  # a missing package or a broken build (missing compiled modules)
        log.debug("GSAS-II not importable: %s", exc)
        return False
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence GSAS-II's prints (it writes progress to stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue():
        log.debug("GSAS-II: %s", buf.getvalue()[-2000:])


def _g2() -> Any:
    """The GSASIIscriptable module, or a RefineError saying GSAS-II is not installed."""
    if not gsas_available():
        raise RefineError(
            "GSAS-II is not installed (GSASII.GSASIIscriptable cannot be imported); "
            "build it from its source repository to use refine_gsas / --engine gsas"
        )
    with _quiet():
        import GSASII.GSASIIfiles as g2fil  # type: ignore[import-not-found]
        import GSASII.GSASIIscriptable as g2sc  # type: ignore[import-not-found]

        g2fil.G2SetPrintLevel("none")
    return g2sc


# ---------------------------------------------------------------------------------------------- input files
def _write_xye(path: Path, tt: np.ndarray, y: np.ndarray, sig: np.ndarray) -> None:
    """Three columns: 2θ (degrees), intensity, σ."""
    np.savetxt(path, np.column_stack([tt, y, sig]), fmt="%.6f %.6f %.6f", header="2theta intensity esd")


@dataclass(frozen=True)
class _InstSetup:
    radiation: Radiation
    geometry: Geometry
    text: str
    refine_displacement: bool
    profile: str = "instrument"


def _instprm(
    pattern: PatternLike,
    instrument: Any | None,
    radiation: Radiation | str | float | None,
    refine_displacement: bool | None,
) -> _InstSetup:
    """GSAS-II .instprm text from an InstrumentParameters-like object (or an Instrument), or the data alone."""
    rad = Radiation.parse(radiation) if radiation is not None else None
    rad = rad or getattr(instrument, "radiation", None) or pattern.radiation
    if rad is None:
        raise RefineError("the pattern has no wavelength: give radiation= (e.g. 'CuKa' or 0.4137 Å)")
    geometry = getattr(instrument, "geometry", None) or (
        Geometry.parse(pattern.geometry) if pattern.geometry is not None else Geometry.UNKNOWN
    )
    geometry = Geometry.parse(geometry)
    if geometry is Geometry.UNKNOWN:
        geometry = Geometry.DEBYE_SCHERRER if rad.probe is Probe.NEUTRON else Geometry.BRAGG_BRENTANO
    neutron = rad.probe is Probe.NEUTRON
    pol = getattr(instrument, "polarization", getattr(instrument, "polarisation", 0.5))
    fwhm = estimate_fwhm(np.asarray(pattern.two_theta), np.asarray(pattern.intensity))
    prof = {
        "U": 0.0,
        "V": 0.0,
        "W": (fwhm * 100.0) ** 2 / (8.0 * math.log(2.0)),
        "X": 0.5,
        "Y": 0.5,
        "Z": 0.0,
    }
    has_profile = instrument is not None and all(hasattr(instrument, k) for k in ("U", "V", "W"))
    if has_profile:
        prof = {k: float(getattr(instrument, k, 0.0)) for k in prof}
    # as our engine: a small Lorentzian to start from (GSAS-II stalls from X = Y = 0 on unknown data)
    prof["X"], prof["Y"] = max(prof["X"], LORENTZ_START), max(prof["Y"], LORENTZ_START)
    lines = [
        "#GSAS-II instrument parameter file; do not add/delete items!",
        f"Type:{'PNC' if neutron else 'PXC'}",
    ]
    lines.append("Bank:1.0")
    wl, wt = rad.wavelengths, rad.weights
    if len(wl) == 2:
        lines += [f"Lam1:{wl[0]:.6f}", f"Lam2:{wl[1]:.6f}", f"I(L2)/I(L1):{wt[1] / wt[0]:.6f}"]
    elif len(wl) == 1:
        lines.append(f"Lam:{wl[0]:.6f}")
    else:
        raise RefineError(f"GSAS-II takes one or two wavelengths, not {len(wl)}")
    lines.append(f"Zero:{float(getattr(instrument, 'zero', 0.0)):.6f}")
    if not neutron:
        lines.append(f"Polariz.:{float(pol):.4f}")
    lines.append("Azimuth:0.0")
    lines += [f"{k}:{v:.6f}" for k, v in prof.items()]
    lines.append(f"SH/L:{float(getattr(instrument, 'SH_L', 0.002)):.6f}")
    shift = geometry is Geometry.BRAGG_BRENTANO if refine_displacement is None else refine_displacement
    return _InstSetup(rad, geometry, "\n".join(lines) + "\n", shift)


def _ops_key(rot: np.ndarray, trans: np.ndarray) -> set[tuple[int, ...]]:
    """Set of symmetry operations as hashable integer tuples (rotation, translation × 24 mod 24)."""
    r = np.rint(rot).astype(int).reshape(len(rot), 9)
    t = np.rint(np.mod(trans, 1.0) * 24).astype(int) % 24
    return {tuple(a) + tuple(b) for a, b in zip(r, t, strict=True)}


def _g2_ops(sgdata: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """All (rotation, translation) operations of a GSAS-II SGData (centring and inversion expanded)."""
    rots, trans = [], []
    signs = (1, -1) if sgdata["SGInv"] else (1,)
    for cen in sgdata["SGCen"]:
        for m, t in sgdata["SGOps"]:
            for s in signs:
                rots.append(s * np.asarray(m, dtype=float))
                trans.append(np.mod(s * np.asarray(t, dtype=float) + np.asarray(cen, dtype=float), 1.0))
    return np.asarray(rots), np.asarray(trans)


def _g2_setting(structure: Structure) -> tuple[Structure, str]:
    """The structure in a setting GSAS-II's standard H-M symbol describes, and that symbol.

    GSAS-II reads a CIF by its H-M symbol (standard setting, origin choice 2, hexagonal axes). The input is
    kept as it is when its own symmetry operations are those of GSAS-II's symbol; otherwise it is transformed
    to the first spglib setting (Hall number) whose operations match (the lattice is then reported there).
    """
    import spglib
    from GSASII import GSASIIspc as g2spc  # type: ignore[import-not-found]

    ph = parameterize(structure)
    number = ph.spacegroup_number
    symbol = str(g2spc.spgbyNum[number])
    err, sgdata = g2spc.SpcGroup(symbol)
    if err:
        raise RefineError(f"GSAS-II does not know space group {symbol!r} (No. {number})")
    want = _ops_key(*_g2_ops(sgdata))
    if _ops_key(ph.symops_rot, ph.symops_trans) == want:
        return structure, symbol
    numbers = {k: i for i, k in enumerate(dict.fromkeys(str(site.species) for site in structure))}
    cell = (
        structure.lattice.matrix.tolist(),
        structure.frac_coords.tolist(),
        [numbers[str(site.species)] for site in structure],
    )
    for hall in range(1, 531):
        sgt = spglib.get_spacegroup_type(hall)
        if sgt is None or sgt.number != number:
            continue
        db = spglib.get_symmetry_from_database(hall)
        if db is None or _ops_key(np.asarray(db["rotations"]), np.asarray(db["translations"])) != want:
            continue
        ds = spglib.get_symmetry_dataset(cell, symprec=1e-3, hall_number=hall)
        if ds is None:
            continue
        # std_positions map std_types back to input sites; keep species (with occupancies) of the input
        mapping = np.asarray(ds.std_mapping_to_primitive)
        prim_to_input = {int(p): i for i, p in reversed(list(enumerate(ds.mapping_to_primitive)))}
        src = [prim_to_input[int(m)] for m in mapping]
        props = {k: [v[i] for i in src] for k, v in structure.site_properties.items()}
        out = Structure(
            Lattice(ds.std_lattice),
            [structure[i].species for i in src],
            ds.std_positions,
            labels=[structure[i].label for i in src],
            site_properties=props or None,
        )
        log.warning("GSAS-II backend: structure transformed to the %s setting (Hall %d)", symbol, hall)
        return out, symbol
    raise RefineError(f"no setting of space group No. {number} matches GSAS-II's {symbol!r}")


def _phase_cif(name: str, structure: Structure, symbol: str, ph: PhaseParameterization) -> str:
    """CIF text GSAS-II can import: H-M symbol, cell, asymmetric-unit sites (one row per species), U_iso."""
    lat = structure.lattice
    lines = [
        f"data_{name}",
        f"_symmetry_space_group_name_H-M '{symbol}'",
        f"_cell_length_a {lat.a:.6f}",
        f"_cell_length_b {lat.b:.6f}",
        f"_cell_length_c {lat.c:.6f}",
        f"_cell_angle_alpha {lat.alpha:.6f}",
        f"_cell_angle_beta {lat.beta:.6f}",
        f"_cell_angle_gamma {lat.gamma:.6f}",
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_occupancy",
        "_atom_site_U_iso_or_equiv",
    ]
    for site in ph.sites:
        x = site.x_start
        for j, (sp, occ) in enumerate(zip(site.species, site.occupancy, strict=True)):
            el = "".join(ch for ch in sp if ch.isalpha())
            label = site.label if j == 0 else f"{site.label}_{el}"
            lines.append(
                f"{label} {el} {x[0]:.6f} {x[1]:.6f} {x[2]:.6f} {occ:.5f} {max(site.b_iso, 0.0) / _EIGHT_PI2:.6f}"
            )
    return "\n".join(lines) + "\n"


def _unique_site_labels(ph: PhaseParameterization) -> None:
    """Make the asymmetric-unit site labels unique and alphanumeric (GSAS-II identifies atoms by label)."""
    seen: set[str] = set()
    for site in ph.sites:
        base = "".join(ch for ch in site.label if ch.isalnum()) or site.species[0]
        new, k = base, 1
        while new in seen:
            k += 1
            new = f"{base}{k}"
        seen.add(new)
        site.label = new


# ---------------------------------------------------------------------------------------------- flags
def _apply_stage(
    groups: set[str],
    hist: Any,
    phases: list[Any],
    setup: _InstSetup,
) -> None:
    """Switch on GSAS-II refinement flags for the (cumulative) parameter groups of a stage."""
    unknown = groups - _GROUPS
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
    if "asym" in groups and setup.radiation.probe is Probe.XRAY:
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


def _release(groups: Iterable[str], hist: Any, phases: list[Any], setup: _InstSetup) -> None:
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


def _no_sample_broadening(hap: dict[str, Any]) -> None:
    """Switch off GSAS-II's default sample broadening (1 μm crystallites, 1000 microstrain) so the peak
    shape is the instrument's U V W X Y alone, as in our engine."""
    hap["Size"][0] = "isotropic"
    hap["Size"][1][0] = SIZE_NONE_UM
    hap["Size"][2][0] = False
    hap["Mustrain"][0] = "isotropic"
    hap["Mustrain"][1][0] = 0.0
    hap["Mustrain"][2][0] = False


def _g2_refine(gpx: Any) -> None:
    """One GSAS-II refinement run (output silenced); its exceptions become RefineError with its message."""
    try:
        with _quiet():
            gpx.refine()
    except Exception as exc:  # GSAS-II raises bare Exception / G2Exception subclasses
        msg = " ".join(str(exc).replace("\\n", " ").split())
        raise RefineError(f"GSAS-II refinement failed: {msg}") from exc


def _calculate(gpx: Any, g2phases: list[Any]) -> tuple[Any, list[Any]]:
    """A zero-cycle GSAS-II run (curves at the current parameters); the reloaded histogram and phases."""
    gpx.set_Controls("cycles", 0)
    _g2_refine(gpx)
    return gpx.histogram(0), [gpx.phase(p.name) for p in g2phases]


def _initial_scale(gpx: Any, g2phases: list[Any]) -> tuple[Any, list[Any]]:
    """Scale(s) and constant background from a weighted linear least-squares fit of the start model.

    GSAS-II starts every scale at 1, which can be many orders of magnitude off for counts-scaled data; its
    first least-squares stage then runs the scale to zero. The same linear start as our engine avoids that.
    """
    hist, g2phases = _calculate(gpx, g2phases)
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


# ---------------------------------------------------------------------------------------------- results
def _sig_lookup(cov: dict[str, Any]) -> dict[str, float]:
    """Parameter name -> esd, for refined and constraint-dependent parameters."""
    sig = dict(zip(cov.get("varyList", []), cov.get("sig", []), strict=False))
    for k, v in cov.get("depSigDict", {}).items():
        sig.setdefault(k, float(v[1]) if isinstance(v, (list, tuple)) else float(v))
    return {k: float(v) for k, v in sig.items()}


def _expand(structure_ops: tuple[np.ndarray, np.ndarray], xyz: np.ndarray) -> np.ndarray:
    """Distinct images (mod 1) of one fractional position under the operations."""
    rot, trans = structure_ops
    imgs = np.mod(np.einsum("kij,j->ki", rot, xyz) + trans, 1.0)
    out: list[np.ndarray] = []
    for p in imgs:
        if not any(np.all(np.abs((p - q) - np.rint(p - q)) < 1e-4) for q in out):
            out.append(p)
    return np.asarray(out)


def _phase_result(
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
    ops = _g2_ops(sgdata)
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
        b = Value(float(a0.uiso) * _EIGHT_PI2, sig.get(u_key, 0.0) * _EIGHT_PI2)
        occ = {a.element: Value(float(a.occupancy), sig.get(f"{pid}::Afrac:{i}", 0.0)) for i, a in members}
        site0 = by_label.get(label)
        images = _expand(ops, xyz)
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
    structure = Structure(lat, species, np.asarray(coords), site_properties={"label": _labels_for(sites)})
    refl = hist.reflections().get(g2phase.name, {}).get("RefList", np.zeros((0, 6)))
    refl = np.asarray(refl, dtype=float)
    ok = (refl[:, 5] >= limits[0]) & (refl[:, 5] <= limits[1]) if len(refl) else np.zeros(0, dtype=bool)
    symops = [SymmOp.from_rotation_and_translation(r, t).as_xyz_str() for r, t in zip(*ops, strict=True)]
    key = f"{pid}:{hist.id}:Rf"
    r_bragg = float(hist.data["data"][0].get(key, float("nan"))) / 100.0
    result = PhaseResult(
        name=g2phase.name,
        formula=structure.composition.reduced_formula,
        spacegroup=str(sgdata["SpGrp"]).replace(" ", ""),
        spacegroup_number=ph0.spacegroup_number,
        crystal_system=ph0.crystal_system,
        lattice=lattice,
        volume=volume,
        scale=scale,
        weight_fraction=Value(1.0, 0.0),
        r_bragg=r_bragg,
        profile={**inst_xy, "po_ratio": Value(1.0, 0.0), **_sample_broadening(g2phase, hist, sig)},
        sites=sites,
        structure=structure,
        ticks=refl[ok, 5] if len(refl) else np.zeros(0),
        tick_hkl=refl[ok, :3].astype(int) if len(refl) else np.zeros((0, 3), dtype=int),
        symops=symops,
    )
    return result


def _sample_broadening(g2phase: Any, hist: Any, sig: dict[str, float]) -> dict[str, Value]:
    """GSAS-II's isotropic crystallite size (μm) and microstrain (×10⁶) of a phase, with esds."""
    hap = g2phase.data["Histograms"][hist.name]
    pre = f"{g2phase.id}:{hist.id}:"
    return {
        "size_um": Value(float(hap["Size"][1][0]), sig.get(pre + "Size;i", 0.0)),
        "microstrain": Value(float(hap["Mustrain"][1][0]), sig.get(pre + "Mustrain;i", 0.0)),
    }


def _labels_for(sites: list[SiteResult]) -> list[str]:
    out: list[str] = []
    for s in sites:
        out += [s.label] * s.multiplicity
    return out


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
) -> RefinementResult:
    """Rietveld refinement of ``structures`` against ``pattern`` with GSAS-II (GSASIIscriptable).

    ``stages``: our :class:`~xrdsolve.refine.rietveld.Stage` list (cumulative parameter groups: scale,
    background, zero, displacement, lattice, profile, asym, po, xyz, biso, occ; ``max_iter`` = GSAS-II
    cycles); default :data:`GSAS_STRATEGY`. ``fix``: groups held in every stage (e.g. ``"asym"``).
    ``profile``: what the "profile" group refines: ``"instrument"`` (U V W X Y, GSAS-II's sample
    broadening switched off: our engine's peak model) or ``"sample"`` (GSAS-II's isotropic crystallite size
    and microstrain from its defaults, 1 μm and 1000, with the instrument's U V W X Y held: the recipe of
    GSAS-II's tutorials and of the G2_validation.json fits).
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
        _instprm(pattern, instrument, radiation, refine_displacement), profile=profile
    )
    plan = list(stages) if stages is not None else list(GSAS_STRATEGY)
    held = set(fix)
    unknown = ({g for st in plan for g in st.groups} | held) - _GROUPS
    if unknown:
        raise RefineError(f"unknown parameter group(s) for the GSAS-II backend: {sorted(unknown)}")
    g2sc = _g2()

    tmp = tempfile.TemporaryDirectory(prefix="xrdsolve-gsas-") if workdir is None else None
    folder = Path(tmp.name if tmp is not None else workdir)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _write_xye(folder / "pattern.xye", tt, y, sig)
        (folder / "instrument.instprm").write_text(setup.text)
        params0: list[PhaseParameterization] = []
        cifs: list[Path] = []
        for i, s in enumerate(structs):
            s2, symbol = _g2_setting(s)
            name = names[i] if names is not None else f"phase{i}_{s2.composition.reduced_formula}"
            ph = parameterize(s2, name=name)
            _unique_site_labels(ph)
            params0.append(ph)
            path = folder / f"phase{i}.cif"
            path.write_text(_phase_cif(f"phase{i}", s2, symbol, ph))
            cifs.append(path)
        with _quiet():
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
            if setup.profile == "instrument":
                _no_sample_broadening(p.data["Histograms"][hist.name])
        hist, g2phases = _initial_scale(gpx, g2phases)
        hist, g2phases, logs, rvals = _run_stages(gpx, hist, g2phases, plan, held, setup, (lo, hi))
        return _build(gpx, hist, g2phases, params0, setup, logs, rvals, (lo, hi), time.perf_counter() - t0)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run_stages(
    gpx: Any,
    hist: Any,
    g2phases: list[Any],
    plan: Sequence[Stage],
    held: set[str],
    setup: _InstSetup,
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
        if setup.profile == "instrument" and "profile" in stage.groups and "profile" not in groups | held:
            # GSAS-II's U V W X Y from a rough start fall into a false minimum (U large, W < 0); first the
            # Gaussian width W alone, then W X Y, with the groups refined so far
            for pre in ("profile_w", "profile_wxy"):
                hist, g2phases = _refine_once(gpx, (groups | {pre}) - held, held, hist, g2phases, setup, 10)
        groups |= set(stage.groups)
        hist, g2phases = _refine_once(gpx, groups - held, held, hist, g2phases, setup, stage.max_iter)
        rvals = dict(gpx["Covariance"]["data"].get("Rvals", {}))
        rwp = float(hist.get_wR()) / 100.0
        status = _status(rvals, rwp, hist, g2phases)
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


def _refine_once(
    gpx: Any, groups: set[str], held: set[str], hist: Any, g2phases: list[Any], setup: _InstSetup, cycles: int
) -> tuple[Any, list[Any]]:
    """Flag ``groups``, clear ``held``, run GSAS-II for at most ``cycles``; the reloaded histogram and phases."""
    _apply_stage(groups, hist, g2phases, setup)
    _release(held, hist, g2phases, setup)
    gpx.set_Controls("cycles", int(cycles))
    _g2_refine(gpx)
    return gpx.histogram(0), [gpx.phase(p.name) for p in g2phases]


def _weight_fractions(phases: list[PhaseResult], g2phases: list[Any], hist: Any, cov: dict[str, Any]) -> None:
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


def _phase_partials(gpx: Any, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    """Each phase's calculated curve (no background) on the grid ``x`` (degrees 2θ), from GSAS-II's
    phase-partials file written by a zero-cycle run (as its GUI's "Compute partials")."""
    import pickle

    path = Path(gpx.filename).with_suffix(".partials")
    path.unlink(missing_ok=True)
    ctrl = gpx.data["Controls"]["data"]
    ctrl["max cyc"], ctrl["deriv type"], ctrl["PhasePartials"] = 0, "analytic Hessian", str(path)
    try:
        _g2_refine(gpx)
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


def _status(rvals: dict[str, Any], rwp: float, hist: Any, g2phases: list[Any]) -> str:
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


def _build(
    gpx: Any,
    hist: Any,
    g2phases: list[Any],
    params0: list[PhaseParameterization],
    setup: _InstSetup,
    logs: list[StageLog],
    rvals: dict[str, Any],
    limits: tuple[float, float],
    seconds: float,
) -> RefinementResult:
    """RefinementResult from the refined GSAS-II project."""
    cov = gpx["Covariance"]["data"]
    sig = _sig_lookup(cov)
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
        phases.append(_phase_result(p, hist, sig, ph0, limits, scale, inst_xy))
    if not single:
        _weight_fractions(phases, g2phases, hist, cov)
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
    curves = [ycalc - ybkg] if single else _phase_partials(gpx, [p.name for p in g2phases], x)
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


__all__ = ["GSAS_STRATEGY", "gsas_available", "refine_gsas"]
