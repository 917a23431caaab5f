"""Refined CIF of one phase, with standard uncertainties in parentheses."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import PhaseResult, RefinementResult, Value


def format_esd(value: float, esd: float, fixed_digits: int = 6) -> str:
    """'1.2345(12)': the esd rounded to two significant digits when it starts with 1, else one (IUCr rule);
    a zero esd gives the value alone with ``fixed_digits`` decimals."""
    if not math.isfinite(value):
        return "?"
    if not math.isfinite(esd) or esd <= 0:
        return (
            f"{value:.{fixed_digits}f}".rstrip("0").rstrip(".")
            if "." in f"{value:.{fixed_digits}f}"
            else f"{value}"
        )
    exp = math.floor(math.log10(esd))
    lead = esd / 10**exp
    sig = 2 if lead < 2 else 1
    decimals = -(exp - sig + 1)
    if decimals <= 0:
        q = 10 ** (-decimals)
        return f"{round(value / q) * q:.0f}({round(esd / q) * q:.0f})"
    e_int = round(esd * 10**decimals)
    if e_int >= 10**sig and sig == 1:  # rounding went up a decade (e.g. 0.096 -> 10)
        decimals -= 1
        e_int = round(esd * 10**decimals)
    return f"{value:.{decimals}f}({e_int})"


def _v(x: Value, digits: int = 6) -> str:
    return format_esd(x.value, x.esd, digits)


def phase_to_cif(phase: PhaseResult, result: RefinementResult | None = None) -> str:
    """CIF text of a refined phase: cell, space-group operators and asymmetric-unit sites with esds.

    Mixed sites are written as one row per species sharing coordinates (labels ``<label>`` and
    ``<label>_<element>``); B_iso in Å² (``_atom_site_B_iso_or_equiv``).
    """
    name = "".join(ch if ch.isalnum() else "_" for ch in phase.name) or "phase"
    lines = [f"data_{name}", "_audit_creation_method 'xrdsolve refine'"]
    if result is not None:
        lines += [
            f"_refine_ls_wR_factor_all {result.rwp:.5f}",
            f"_pd_proc_ls_prof_wR_factor {result.rwp:.5f}",
            f"_pd_proc_ls_prof_R_factor {result.rp:.5f}",
            f"_pd_proc_ls_prof_wR_expected {result.rexp:.5f}",
            f"_refine_ls_goodness_of_fit_all {result.gof:.4f}",
        ]
    lines += [
        f"_chemical_formula_sum '{phase.structure.composition.formula}'",
        f"_space_group_name_H-M_alt '{phase.spacegroup}'",
        f"_space_group_IT_number {phase.spacegroup_number}",
        f"_cell_length_a {_v(phase.lattice['a'])}",
        f"_cell_length_b {_v(phase.lattice['b'])}",
        f"_cell_length_c {_v(phase.lattice['c'])}",
        f"_cell_angle_alpha {_v(phase.lattice['alpha'], 4)}",
        f"_cell_angle_beta {_v(phase.lattice['beta'], 4)}",
        f"_cell_angle_gamma {_v(phase.lattice['gamma'], 4)}",
        f"_cell_volume {_v(phase.volume, 3)}",
        "",
        "loop_",
        "_space_group_symop_id",
        "_space_group_symop_operation_xyz",
    ]
    ops = phase.symops or ["x, y, z"]
    lines += [f"{i + 1} '{op}'" for i, op in enumerate(ops)]
    lines += [
        "",
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_symmetry_multiplicity",
        "_atom_site_Wyckoff_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_occupancy",
        "_atom_site_B_iso_or_equiv",
        "_atom_site_adp_type",
    ]
    for site in phase.sites:
        for j, (species, occ) in enumerate(site.occupancy.items()):
            label = site.label if j == 0 else f"{site.label}_{_element(species)}"
            lines.append(
                " ".join(
                    [
                        label,
                        species,
                        str(site.multiplicity),
                        site.wyckoff.lstrip("0123456789") or "?",
                        _v(site.xyz[0]),
                        _v(site.xyz[1]),
                        _v(site.xyz[2]),
                        _v(occ, 4),
                        _v(site.b_iso, 4),
                        "Biso",
                    ]
                )
            )
    return "\n".join(lines) + "\n"


def _element(species: str) -> str:
    out = ""
    for ch in species:
        if ch.isalpha():
            out += ch
        else:
            break
    return out or species
