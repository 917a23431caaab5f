"""GSAS-II input files: the pattern (.xye), the instrument (.instprm) and each phase (CIF in a setting GSAS-II's
H-M symbol describes)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from ..errors import RefineError
from ..params import PhaseParameterization, parameterize
from ..physics.params import GONIOMETER_RADIUS_MM
from ..protocols import PatternLike
from ..radiation import Geometry, Probe, Radiation
from ..rietveld import estimate_fwhm

log = logging.getLogger(__name__)

EIGHT_PI2 = 8.0 * math.pi**2
#: starting Lorentzian X, Y (centidegrees) without an instrument file, as our engine (GSAS-II stalls from 0)
LORENTZ_START = 0.5


# ---------------------------------------------------------------------------------------------- input files
def write_xye(path: Path, tt: np.ndarray, y: np.ndarray, sig: np.ndarray) -> None:
    """Three columns: 2θ (degrees), intensity, σ."""
    np.savetxt(path, np.column_stack([tt, y, sig]), fmt="%.6f %.6f %.6f", header="2theta intensity esd")


@dataclass(frozen=True)
class InstSetup:
    radiation: Radiation
    geometry: Geometry
    text: str
    refine_displacement: bool
    profile: str = "instrument"
    #: no U V W from an instrument file: the profile is refined from a rough start (W from the data)
    rough_start: bool = True
    #: mm; set as GSAS-II's "Gonio. radius" so its sample shift (μm) means what ours does
    goniometer_radius: float = GONIOMETER_RADIUS_MM


def instrument_file(
    pattern: PatternLike,
    instrument: Any | None,
    radiation: Radiation | str | float | None,
    refine_displacement: bool | None,
) -> InstSetup:
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
        "X": LORENTZ_START,
        "Y": LORENTZ_START,
        "Z": 0.0,
    }
    has_profile = instrument is not None and all(hasattr(instrument, k) for k in ("U", "V", "W"))
    if has_profile:
        prof = {k: float(getattr(instrument, k, 0.0)) for k in prof}
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
    radius = float(getattr(instrument, "goniometer_radius", GONIOMETER_RADIUS_MM))
    return InstSetup(
        rad, geometry, "\n".join(lines) + "\n", shift, rough_start=not has_profile, goniometer_radius=radius
    )


def ops_key(rot: np.ndarray, trans: np.ndarray) -> set[tuple[int, ...]]:
    """Set of symmetry operations as hashable integer tuples (rotation, translation × 24 mod 24)."""
    r = np.rint(rot).astype(int).reshape(len(rot), 9)
    t = np.rint(np.mod(trans, 1.0) * 24).astype(int) % 24
    return {tuple(a) + tuple(b) for a, b in zip(r, t, strict=True)}


def g2_ops(sgdata: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """All (rotation, translation) operations of a GSAS-II SGData (centring and inversion expanded)."""
    rots, trans = [], []
    signs = (1, -1) if sgdata["SGInv"] else (1,)
    for cen in sgdata["SGCen"]:
        for m, t in sgdata["SGOps"]:
            for s in signs:
                rots.append(s * np.asarray(m, dtype=float))
                trans.append(np.mod(s * np.asarray(t, dtype=float) + np.asarray(cen, dtype=float), 1.0))
    return np.asarray(rots), np.asarray(trans)


def g2_setting(structure: Structure) -> tuple[Structure, str]:
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
    want = ops_key(*g2_ops(sgdata))
    if ops_key(ph.symops_rot, ph.symops_trans) == want:
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
        if db is None or ops_key(np.asarray(db["rotations"]), np.asarray(db["translations"])) != want:
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


def phase_cif(name: str, structure: Structure, symbol: str, ph: PhaseParameterization) -> str:
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
                f"{label} {el} {x[0]:.6f} {x[1]:.6f} {x[2]:.6f} {occ:.5f} {max(site.b_iso, 0.0) / EIGHT_PI2:.6f}"
            )
    return "\n".join(lines) + "\n"


def unique_site_labels(ph: PhaseParameterization) -> None:
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
