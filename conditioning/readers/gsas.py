"""GSAS (GSAS-I / GSAS-II) powder data: .gsa .gss .gsas .fxye .raw .XRA .CWN text files.

Layout: a title line, an optional ``Instrument parameter file:`` line, ``#`` comment lines, then one
or more banks, each a ``BANK n nchan nrec BINTYP bcoef1 bcoef2 bcoef3 bcoef4 [TYPE]`` record followed
by ``nrec`` data lines. Data types: STD (10 fields of 8 characters: 2-character counter number +
6-character count; σ² = I/ncounters), ESD (5 pairs of 8-character I, σ), ALT (4 triplets of 20
characters: x·32 (8), I·1000 (7), σ·1000 (5)), FXY/FXYE (free-format x (centidegrees), I[, σ]).
Binning: CONST/CONS (``bcoef1`` = first 2θ and ``bcoef2`` = step, both in centidegrees) or RALF
(time-of-flight; read by :func:`parse_gsas` but refused by :func:`read_gsas` since a
:class:`Pattern` holds 2θ data). The header's ``nchan`` sets the number of points.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from xrdsolve.refine.radiation import Radiation

from ..errors import PatternFormatError
from ..pattern import Pattern, SigmaSource
from ._common import build_pattern, check_count, make_radiation, to_float, wavelength_from_text

_MAX_POINTS = 50_000_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GsasBank:
    """One BANK record: its header values and where its data lines start (0-based line index)."""

    number: int
    nchan: int
    nrec: int
    bintyp: str
    bcoef: tuple[float, ...]
    datatype: str
    line: int  #: 1-based line of the BANK record

    def describe(self) -> str:
        return f"BANK {self.number}: {self.nchan} points, {self.bintyp} binning, {self.datatype}"


@dataclass(frozen=True)
class GsasData:
    """Raw numbers of one bank: x (2θ degrees for CONST/FXY, TOF µs for RALF), I, σ (NaN if absent)."""

    bank: GsasBank
    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    lines: np.ndarray
    is_tof: bool
    title: str
    comments: list[str]


def list_banks(text: str, source: str | None = None) -> list[GsasBank]:
    """Every BANK record in a GSAS powder file."""
    banks: list[GsasBank] = []
    for i, raw in enumerate(text.splitlines()):
        if i == 0 or not raw.startswith("BANK"):
            continue
        banks.append(_parse_bank_line(raw, i + 1, source))
    return banks


def _parse_bank_line(raw: str, lineno: int, source: str | None) -> GsasBank:
    toks = raw.split()
    expected = "BANK n nchan nrec BINTYP bcoef1 bcoef2 ... [STD|ESD|ALT|FXY|FXYE]"
    if len(toks) < 5:
        raise PatternFormatError(source, "incomplete BANK record", line=lineno, expected=expected)
    try:
        number = int(toks[1])
        nchan_f = float(toks[2])
        nrec_f = float(toks[3])
    except ValueError:
        raise PatternFormatError(
            source, f"unreadable BANK record {raw.strip()!r}", line=lineno, expected=expected
        ) from None
    nchan = check_count(nchan_f, _MAX_POINTS, source, "number of points", line=lineno)
    nrec = check_count(nrec_f, _MAX_POINTS, source, "number of records", line=lineno)
    bintyp = toks[4].upper()
    rest = toks[5:]
    datatype = "STD"
    if rest and rest[-1].upper() in ("STD", "ESD", "ALT", "FXY", "FXYE"):
        datatype = rest[-1].upper()
        rest = rest[:-1]
    elif bintyp in ("FXY", "FXYE"):
        datatype = bintyp
    bcoef: list[float] = []
    for t in rest:
        try:
            bcoef.append(float(t))
        except ValueError:
            break
    return GsasBank(number, nchan, nrec, bintyp, tuple(bcoef), datatype, lineno)


def _fields(line: str, width: int, count: int) -> list[str]:
    line = line.rstrip("\r\n").ljust(width * count)
    return [line[k * width : (k + 1) * width] for k in range(count)]


def parse_gsas(text: str, source: str | None = None, bank: int | None = None) -> GsasData:
    """Parse one bank (``bank`` = its number as in the BANK record, or None for the first)."""
    lines = text.splitlines()
    if not lines:
        raise PatternFormatError(source, "empty file", expected="a GSAS title line and a BANK record")
    banks = list_banks(text, source)
    if not banks:
        raise PatternFormatError(source, "no BANK record", expected="a line starting 'BANK'")
    if bank is None:
        chosen = banks[0]
    else:
        matches = [b for b in banks if b.number == bank]
        if not matches:
            raise PatternFormatError(
                source, f"no bank {bank}", expected="one of banks " + ", ".join(str(b.number) for b in banks)
            )
        chosen = matches[0]
    comments = [ln.strip() for ln in lines[1 : chosen.line - 1] if ln.startswith("#")]
    title = lines[0].strip()
    data_lines: list[tuple[int, str]] = []
    for j in range(chosen.line, len(lines)):
        s = lines[j]
        if s.startswith("BANK") or s.startswith("TIME_MAP") or "\x1a" in s:
            break
        if s.startswith("#") or not s.strip():
            continue
        data_lines.append((j + 1, s))
    dt = chosen.datatype
    xs: list[float] = []
    ys: list[float] = []
    es: list[float] = []
    ls: list[int] = []
    if dt in ("FXY", "FXYE"):
        need = 3 if dt == "FXYE" else 2
        for lineno, s in data_lines:
            toks = s.split()
            if len(toks) < need:
                raise PatternFormatError(
                    source,
                    f"{len(toks)} values on a {dt} line",
                    line=lineno,
                    expected=f"{need} values (x I σ)",
                )
            xs.append(to_float(toks[0], source, lineno, "x in centidegrees"))
            ys.append(to_float(toks[1], source, lineno, "an intensity"))
            es.append(to_float(toks[2], source, lineno, "an esd") if dt == "FXYE" else np.nan)
            ls.append(lineno)
    elif dt == "ESD":
        for lineno, s in data_lines:
            for f in _fields(s, 16, 5):
                if not f.strip():
                    break
                ys.append(to_float(f[:8], source, lineno, "an 8-character intensity"))
                es.append(to_float(f[8:], source, lineno, "an 8-character esd") if f[8:].strip() else np.nan)
                ls.append(lineno)
    elif dt == "ALT":
        for lineno, s in data_lines:
            for f in _fields(s, 20, 4):
                if not f[:8].strip():
                    break
                xs.append(to_float(f[:8], source, lineno, "x·32 in 8 characters"))
                ys.append(to_float(f[8:15], source, lineno, "I·1000 in 7 characters") / 1000.0)
                es.append(
                    to_float(f[15:20], source, lineno, "σ·1000 in 5 characters") / 1000.0
                    if f[15:20].strip()
                    else np.nan
                )
                ls.append(lineno)
    else:  # STD
        for lineno, s in data_lines:
            for f in _fields(s, 8, 10):
                if not f.strip():
                    break
                nc = f[:2].strip()
                ncount = int(to_float(nc, source, lineno, "a counter number")) if nc else 1
                yi = to_float(f[2:], source, lineno, "a 6-character count")
                ys.append(yi)
                es.append(np.sqrt(max(yi, 1.0) / max(ncount, 1)))
                ls.append(lineno)
    n = chosen.nchan
    if dt in ("FXY", "FXYE", "ALT") and len(ys) != n:
        # x is explicit on every line: the data lines, not the header count, define the pattern
        log.warning("%s: bank %d declares %d points but holds %d", source, chosen.number, n, len(ys))
        n = len(ys)
    if len(ys) < n:
        raise PatternFormatError(
            source,
            f"bank {chosen.number} ends after {len(ys)} points (file truncated?)",
            line=(ls[-1] if ls else chosen.line),
            expected=f"{n} points as declared in the BANK record",
        )
    y = np.asarray(ys[:n])
    e = np.asarray(es[:n])
    line_arr = np.asarray(ls[:n])
    bt = chosen.bintyp
    is_tof = bt == "RALF" or bt.startswith("TIME_MAP")
    if dt in ("FXY", "FXYE"):
        x = np.asarray(xs[:n]) / (1.0 if is_tof else 100.0)
    elif dt == "ALT":
        x = np.asarray(xs[:n]) / (32.0 if is_tof else 3200.0)
    elif bt in ("CONST", "CONS"):
        if len(chosen.bcoef) < 2 or not np.isfinite(chosen.bcoef[:2]).all() or chosen.bcoef[1] <= 0:
            raise PatternFormatError(
                source,
                "CONST bank without a valid start and step",
                line=chosen.line,
                expected="bcoef1 bcoef2 > 0",
            )
        x = np.asarray((chosen.bcoef[0] + chosen.bcoef[1] * np.arange(n)) / 100.0, dtype=np.float64)
    elif is_tof:
        raise PatternFormatError(
            source,
            f"{bt} binning with {dt} data carries no x values",
            line=chosen.line,
            expected="ALT or FXY/FXYE data for time-of-flight banks",
        )
    else:
        raise PatternFormatError(
            source, f"unsupported binning {bt!r}", line=chosen.line, expected="CONST, CONS or RALF"
        )
    sigma = None if dt == "FXY" else e
    return GsasData(chosen, x, y, sigma, line_arr, is_tof, title, comments)


def read_gsas(
    text: str, source: str | None = None, radiation: Radiation | None = None, bank: int | None = None
) -> Pattern:
    """A :class:`Pattern` from a GSAS powder file (constant-wavelength banks only)."""
    d = parse_gsas(text, source, bank)
    if d.is_tof:
        raise PatternFormatError(
            source,
            f"bank {d.bank.number} is time-of-flight ({d.bank.bintyp}); only constant-wavelength 2θ data are supported",
            line=d.bank.line,
        )
    file_rad = None
    wl = wavelength_from_text("\n".join([d.title, *d.comments]))
    if wl is not None and re.search(r"(?i)wavelength|lambda", "\n".join([d.title, *d.comments])):
        file_rad = make_radiation([wl], source=source)
    sigma_source = SigmaSource.COUNTING if d.bank.datatype == "STD" else SigmaSource.FILE
    # GSAS (and GSAS-II's importer) give zero weight to points of zero variance: STD counts ≤ 0 (e.g. the
    # zero padding after the last measured step), ESD/ALT/FXYE esds ≤ 0; they are not observations
    if d.bank.datatype == "STD":
        keep = d.y > 0
    else:
        keep = ~(d.sigma <= 0) if d.sigma is not None else np.ones(len(d.y), dtype=bool)
    if not keep.all():
        log.info("%s: %d point(s) of zero weight (GSAS convention) left out", source, int((~keep).sum()))
    return build_pattern(
        d.x[keep],
        d.y[keep],
        None if d.sigma is None else d.sigma[keep],
        source=source,
        fmt=f"gsas-{d.bank.datatype.lower()}",
        radiation=radiation if radiation is not None else file_rad,
        lines=d.lines[keep],
        sigma_source=sigma_source,
        meta={
            "title": d.title,
            "bank": d.bank.number,
            "bank_record": d.bank.describe(),
            "comments": d.comments,
            "zero_weight_points_left_out": int((~keep).sum()),
        },
    )


def looks_like_gsas(text: str) -> bool:
    """A BANK record within the first 200 lines (after the title line)."""
    return any(ln.startswith("BANK") for ln in text.splitlines()[1:200])
