"""pyFAI / Fit2D / diffpy .chi integrated patterns.

Two header styles: pyFAI (``#`` lines, ``# Unit: 2th_deg`` or a column header such as ``2th_deg I``,
``q_nm^-1``, ``q_A^-1``, ``chi_Q``) and Fit2D (title line, x-axis label such as ``2-Theta Angle
(Degrees)`` or ``Q (Angstroms-1)``, y label, number of points). The x unit decides the conversion:
2θ (deg or rad) is used directly; Q (Å⁻¹, or nm⁻¹ divided by 10) needs a wavelength, from the header
or given by the caller, else :class:`MissingWavelengthError`.
"""

from __future__ import annotations

import re

import numpy as np

from xrdsolve.refine.radiation import Radiation, q_to_two_theta

from ..errors import MissingWavelengthError, PatternFormatError
from ..pattern import Pattern
from ._common import build_pattern, check_count, make_radiation, to_float, wavelength_from_text

_UNIT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"2th_deg|2-?theta.*deg|two_?theta|2theta|2th\b|tth", "2th_deg"),
    (r"2th_rad|2-?theta.*rad", "2th_rad"),
    (r"q_nm\^?-1|q.*nm|nm\^?-1|1/nm", "q_nm^-1"),
    (r"q_a\^?-1|q.*(angstrom|å|\ba\b)|a\^?-1|1/a|chi_q|^q\b|\bq\b", "q_A^-1"),
)


def detect_unit(header: list[str]) -> str | None:
    """The x unit named in header lines: '2th_deg', '2th_rad', 'q_nm^-1', 'q_A^-1' or None."""
    text = "\n".join(h.lstrip("#").strip().lower() for h in header)
    m = re.search(r"unit\s*[:=]\s*(\S+)", text)
    candidates = [m.group(1)] if m else []
    candidates.append(text)
    for cand in candidates:
        for pattern, unit in _UNIT_PATTERNS:
            if re.search(pattern, cand, re.IGNORECASE):
                return unit
    return None


def read_chi(text: str, source: str | None = None, radiation: Radiation | None = None) -> Pattern:
    """A :class:`Pattern` from a .chi file's text."""
    lines = text.splitlines()
    header: list[str] = []
    rows: list[list[str]] = []
    row_lines: list[int] = []
    fit2d = bool(lines) and not lines[0].lstrip().startswith("#") and len(lines) > 4
    start = 0
    if fit2d:
        # Fit2D: title, x label, y label, number of points
        header = [ln.strip() for ln in lines[:4]]
        npts = to_float(lines[3].split()[0] if lines[3].split() else "", source, 4, "the number of points")
        check_count(npts, len(lines), source, "number of points", line=4)
        start = 4
    ncol = 0
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if not s:
            continue
        if s.startswith("#"):
            if not rows:
                header.append(s)
            continue
        toks = s.split()
        if not rows:
            ncol = len(toks)
            if ncol < 2:
                raise PatternFormatError(source, f"{ncol} column", line=i + 1, expected="x I [σ]")
        elif len(toks) != ncol:
            raise PatternFormatError(
                source,
                f"{len(toks)} columns, data started with {ncol}",
                line=i + 1,
                expected=f"{ncol} columns",
            )
        rows.append(toks)
        row_lines.append(i + 1)
    if not rows:
        raise PatternFormatError(source, "no data lines", expected="columns x I [σ]")
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except ValueError:
        for toks, lineno in zip(rows, row_lines, strict=True):
            for t in toks:
                to_float(t, source, lineno, "a number")
        raise PatternFormatError(source, "unreadable numbers", expected="numeric columns") from None
    x, y = arr[:, 0], arr[:, 1]
    sigma = arr[:, 2] if ncol >= 3 else None
    unit = detect_unit(header)
    if unit is None:
        raise PatternFormatError(
            source,
            "cannot tell the x unit from the header",
            expected="a 2θ or Q unit (e.g. '# Unit: 2th_deg')",
        )
    wl = wavelength_from_text("\n".join(header))
    file_rad = None if wl is None else make_radiation([wl if wl > 1e-3 else wl * 1e10], source=source)
    rad = radiation if radiation is not None else file_rad
    meta: dict[str, object] = {"x_unit": unit, "header": header[:20]}
    if unit == "2th_rad":
        x = np.rad2deg(x)
    elif unit.startswith("q_"):
        q = x / 10.0 if unit == "q_nm^-1" else x
        if rad is None:
            raise MissingWavelengthError(
                f"{source or '<input>'}: data are in Q ({unit}); a wavelength is needed to convert to 2θ "
                "(give --wavelength or radiation=...)"
            )
        x = q_to_two_theta(q, rad.primary_wavelength)
        if np.isnan(x).any():
            i = int(np.argmax(np.isnan(x)))
            raise PatternFormatError(
                source,
                f"Q = {q[i]:.4g} Å⁻¹ is unreachable with λ = {rad.primary_wavelength} Å",
                line=int(row_lines[i]),
                expected="Q < 4π/λ",
            )
        meta["q_max"] = float(q.max())
    return build_pattern(
        x, y, sigma, source=source, fmt="chi", radiation=rad, lines=np.asarray(row_lines), meta=meta
    )
