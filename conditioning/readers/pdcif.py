"""Powder CIF (pdCIF): ``_pd_meas_*`` / ``_pd_proc_*`` loops, parsed with gemmi's CIF tokenizer.

Intensity: ``_pd_meas_counts_total``, ``_pd_meas_intensity_total``, ``_pd_proc_intensity_total``
or ``_pd_proc_intensity_net`` (first present). 2θ: ``_pd_meas_2theta_scan``,
``_pd_meas_2theta_corrected``, ``_pd_proc_2theta_corrected`` loops, else the
``_pd_meas_2theta_range_min/max/inc`` (or ``_pd_proc_…``) items with ``_pd_meas_number_of_points``.
σ: the standard uncertainty in parentheses (``5540(160)``), else 1/√``_pd_proc_ls_weight`` where the
weight is positive, else counting statistics. Wavelength(s) from ``_diffrn_radiation_wavelength``
(a loop with ``_wt`` gives a doublet); probe from ``_diffrn_radiation_probe``. Data blocks holding a
pattern are numbered from 1; ``bank`` chooses one.
"""

from __future__ import annotations

import re

import gemmi
import numpy as np

from xrdsolve.refine.radiation import Radiation

from ..errors import PatternFormatError
from ..pattern import Pattern
from ._common import build_pattern, check_count, make_radiation

_INTENSITY_TAGS = (
    "_pd_meas_counts_total",
    "_pd_meas_intensity_total",
    "_pd_proc_intensity_total",
    "_pd_proc_intensity_net",
)
_X_TAGS = (
    "_pd_meas_2theta_scan",
    "_pd_meas_2theta_corrected",
    "_pd_proc_2theta_corrected",
    "_pd_meas_angle_2theta",
)
_NUM_SU = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((\d+)\))?\s*$")


def _value_su(token: str, source: str | None, what: str) -> tuple[float, float]:
    """CIF number with optional su in parentheses -> (value, su or NaN); '.'/'?' -> (NaN, NaN)."""
    if token in (".", "?"):
        return np.nan, np.nan
    m = _NUM_SU.match(token)
    if not m:
        raise PatternFormatError(source, f"cannot read {token!r} as a number", expected=what)
    value = float(m.group(1))
    if m.group(2) is None:
        return value, np.nan
    mant = m.group(1).split("e")[0].split("E")[0]
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return value, float(m.group(2)) * 10.0**-decimals


def _column(block: gemmi.cif.Block, tag: str) -> list[str] | None:
    col = block.find_values(tag)
    if len(col) == 0:
        return None
    return [str(v) for v in col]


def _pattern_blocks(doc: gemmi.cif.Document) -> list[gemmi.cif.Block]:
    return [b for b in doc if any(len(b.find_values(t)) > 1 for t in _INTENSITY_TAGS)]


def _number(block: gemmi.cif.Block, tags: tuple[str, ...], source: str | None) -> float | None:
    for tag in tags:
        v = block.find_value(tag)
        if v is not None and v not in (".", "?"):
            return _value_su(str(v), source, tag)[0]
    return None


def _radiation(doc: gemmi.cif.Document, block: gemmi.cif.Block, source: str | None) -> Radiation | None:
    for b in [block, *doc]:
        wl = b.find_values("_diffrn_radiation_wavelength")
        if len(wl) == 0:
            continue
        wts = b.find_values("_diffrn_radiation_wavelength_wt")
        probe_v = b.find_value("_diffrn_radiation_probe")
        probe = "neutron" if probe_v is not None and "neutron" in str(probe_v).lower() else "xray"
        values = [_value_su(str(v), source, "a wavelength")[0] for v in wl]
        weights = (
            [_value_su(str(v), source, "a weight")[0] for v in wts]
            if len(wts) == len(wl)
            else [1.0] * len(wl)
        )
        keep = [i for i, v in enumerate(values) if np.isfinite(v)]
        if not keep:
            continue
        return make_radiation(
            [values[i] for i in keep], [weights[i] for i in keep], probe=probe, source=source
        )
    return None


def read_pdcif(
    text: str, source: str | None = None, radiation: Radiation | None = None, bank: int | None = None
) -> Pattern:
    """A :class:`Pattern` from a powder CIF's text."""
    try:
        doc = gemmi.cif.read_string(text)
    except (RuntimeError, ValueError) as exc:
        msg = str(exc)
        m = re.search(r":(\d+)", msg)
        raise PatternFormatError(
            source, f"CIF syntax error: {msg[:200]}", line=int(m.group(1)) if m else None
        ) from None
    blocks = _pattern_blocks(doc)
    if not blocks:
        raise PatternFormatError(
            source, "no powder data loop", expected="a loop with one of " + ", ".join(_INTENSITY_TAGS)
        )
    idx = 0 if bank is None else bank - 1
    if not 0 <= idx < len(blocks):
        raise PatternFormatError(
            source, f"no pattern block {idx + 1}", expected=f"a block number 1–{len(blocks)}"
        )
    block = blocks[idx]
    tag = next(t for t in _INTENSITY_TAGS if len(block.find_values(t)) > 1)
    raw_y = _column(block, tag) or []
    ys, sus = zip(*(_value_su(v, source, "an intensity") for v in raw_y), strict=True)
    y = np.asarray(ys)
    su = np.asarray(sus)
    n = y.size
    x = None
    for xt in _X_TAGS:
        col = _column(block, xt)
        if col is not None and len(col) == n:
            x = np.asarray([_value_su(v, source, "a 2θ value")[0] for v in col])
            break
    if x is None:
        lo = _number(block, ("_pd_meas_2theta_range_min", "_pd_proc_2theta_range_min"), source)
        hi = _number(block, ("_pd_meas_2theta_range_max", "_pd_proc_2theta_range_max"), source)
        inc = _number(block, ("_pd_meas_2theta_range_inc", "_pd_proc_2theta_range_inc"), source)
        npts = _number(block, ("_pd_meas_number_of_points", "_pd_proc_number_of_points"), source)
        if lo is None or (hi is None and inc is None):
            raise PatternFormatError(
                source,
                "no 2θ values",
                expected="a _pd_meas_2theta_scan loop or _pd_meas_2theta_range_* items",
            )
        if npts is not None:
            check_count(npts, 10**8, source, "_pd_meas_number_of_points")
            if int(npts) != n:
                raise PatternFormatError(
                    source,
                    f"{n} intensities but _pd_meas_number_of_points = {int(npts)}",
                    expected="equal counts",
                )
        if hi is not None and n > 1 and (inc is None or abs((hi - lo) / (n - 1) - inc) <= 0.5 * abs(inc)):
            x = np.linspace(lo, hi, n)
        elif inc is not None:
            x = lo + inc * np.arange(n)
        else:
            raise PatternFormatError(
                source, "inconsistent 2θ range items", expected="min, max, inc and n agreeing"
            )
    sigma = su.copy()
    wcol = _column(block, "_pd_proc_ls_weight")
    if wcol is not None and len(wcol) == n:
        w = np.asarray([_value_su(v, source, "a weight")[0] for v in wcol])
        use = ~np.isfinite(sigma) & np.isfinite(w) & (w > 0)
        sigma[use] = 1.0 / np.sqrt(w[use])
    if not np.isfinite(sigma).any():
        sigma_arg = None
    else:
        sigma_arg = sigma
    return build_pattern(
        x,
        y,
        sigma_arg,
        source=source,
        fmt="pdcif",
        radiation=radiation if radiation is not None else _radiation(doc, block, source),
        counts="counts" in tag or None,
        meta={"block": block.name, "intensity_tag": tag, "n_blocks": len(blocks)},
    )


def looks_like_pdcif(text: str) -> bool:
    return bool(re.search(r"(?m)^\s*data_", text)) and "_pd_" in text
