"""Plain column files: .xy .xye .dat .csv .txt .prn, and FullProf-style start/step/end .dat files.

Comment lines start with ``#``, ``!``, ``;``, ``%`` or ``//``; non-numeric lines before the data are a
header (column names there are used: a third column named esd/sigma/su/error is σ). Delimiters
(whitespace, comma, semicolon, tab) are detected from the first data line. Two columns: 2θ, I (σ from
counting statistics when the values look like counts); three or more: 2θ, I, σ unless the header
names the third column as something else. A header ``# radiation: ...`` written by
:func:`~xrdsolve.conditioning.io.write_pattern`, or any ``wavelength = 1.54`` in the header, sets the
radiation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from xrdsolve.refine.radiation import Geometry, Radiation

from ..errors import PatternFormatError
from ..pattern import Pattern, SigmaSource
from ._common import build_pattern, make_radiation, to_float, wavelength_from_text

COMMENT_PREFIXES = ("#", "!", ";", "%", "//", "'")
_SIGMA_NAMES = re.compile(r"(?i)^(e|esd|err|error|errors|sigma|sig|su|s\.u\.|dy|dI|uncertainty|std|stdev)$")
_NUMBER_START = re.compile(r"^\s*[-+]?(\d|\.\d|nan|inf)", re.IGNORECASE)
_FIRST_TOKEN = re.compile(r"[\s,;]+")


def _starts_with_number(line: str) -> bool:
    """True when the line's first token is a number (so '2theta intensity' is a header, not data)."""
    if not _NUMBER_START.match(line):
        return False
    first = _FIRST_TOKEN.split(line.strip(), maxsplit=1)[0]
    try:
        float(first)
    except ValueError:
        return False
    return True


@dataclass
class ColumnData:
    """Numbers read from a column file (before validation), with 1-based source lines."""

    columns: list[np.ndarray]
    lines: np.ndarray
    header: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    delimiter: str | None = None


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [t.strip() for t in line.split(delimiter)]


def _detect_delimiter(line: str) -> str | None:
    for d in (",", ";", "\t"):
        if d in line:
            parts = [p for p in line.split(d) if p.strip()]
            if len(parts) >= 2:
                return d
    return None


def _is_comment(stripped: str) -> bool:
    return stripped.startswith(COMMENT_PREFIXES)


def parse_columns(text: str, source: str | None = None) -> ColumnData:
    """Read whitespace/comma/semicolon/tab separated numeric columns from ``text``."""
    header: list[str] = []
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    ncol = 0
    delimiter: str | None = None
    names: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s:
            continue
        if _is_comment(s):
            if not rows:
                header.append(s)
            continue
        if not rows and not _starts_with_number(s):
            header.append(s)
            continue
        if not rows:
            delimiter = _detect_delimiter(s)
        tokens = [t for t in _split(s, delimiter) if t != ""] if delimiter is None else _split(s, delimiter)
        if delimiter is not None and tokens and tokens[-1] == "":
            tokens = tokens[:-1]
        if not rows:
            ncol = len(tokens)
            if ncol < 2:
                raise PatternFormatError(
                    source, f"first data line has {ncol} column", line=lineno, expected="at least 2 columns"
                )
            if header:
                names = [n for n in re.split(r"[\s,;\t]+", header[-1].lstrip("#!;%/' ").strip()) if n]
        elif len(tokens) != ncol:
            raise PatternFormatError(
                source,
                f"{len(tokens)} columns where the data started with {ncol}",
                line=lineno,
                expected=f"{ncol} columns",
            )
        rows.append(tokens)
        line_numbers.append(lineno)
    if not rows:
        raise PatternFormatError(source, "no numeric data lines found", expected="columns 2θ intensity [σ]")
    try:
        arr = np.asarray(rows, dtype=np.float64)  # fast path: numpy converts the strings
    except ValueError:
        for tokens, lineno in zip(rows, line_numbers, strict=True):  # find the offending token
            for t in tokens:
                to_float(t, source, lineno, "a number")
        raise PatternFormatError(source, "unreadable numbers", expected="numeric columns") from None
    return ColumnData([arr[:, j] for j in range(ncol)], np.asarray(line_numbers), header, names, delimiter)


def _header_radiation(header: list[str], source: str | None) -> tuple[Radiation | None, dict[str, str]]:
    """Radiation and xrdsolve keys (``# key: value``) from header lines."""
    keys: dict[str, str] = {}
    for h in header:
        m = re.match(r"^[#!;%/' ]*xrdsolve[-_ ]([a-z_]+)\s*:\s*(.*)$", h, re.IGNORECASE)
        if m:
            keys[m.group(1).lower()] = m.group(2).strip()
    if "radiation" in keys:
        fields = dict(kv.split("=", 1) for kv in keys["radiation"].split() if "=" in kv)
        try:
            wl = [float(v) for v in fields["wavelengths"].split(",")]
            wt = [float(v) for v in fields.get("weights", ",".join("1" for _ in wl)).split(",")]
        except (KeyError, ValueError):
            raise PatternFormatError(source, "unreadable 'xrdsolve-radiation' header") from None
        name = fields.get("name")
        return (
            make_radiation(
                wl,
                wt,
                probe=fields.get("probe", "xray"),
                name=None if name in (None, "None") else name,
                source=source,
            ),
            keys,
        )
    wl0 = wavelength_from_text("\n".join(header))
    return (None if wl0 is None else make_radiation([wl0], source=source)), keys


def read_columns(text: str, source: str | None = None, radiation: Radiation | None = None) -> Pattern:
    """A :class:`Pattern` from a column file's text (radiation from the header unless given)."""
    if looks_like_fullprof_dat(text):
        return read_fullprof_dat(text, source, radiation)
    data = parse_columns(text, source)
    file_rad, keys = _header_radiation(data.header, source)
    ncol = len(data.columns)
    sigma = None
    if ncol >= 3:
        third = data.names[2] if len(data.names) == ncol else None
        if ncol == 3 or third is None or _SIGMA_NAMES.match(third):
            sigma = data.columns[2]
    sigma_source = None
    if "sigma_source" in keys:
        try:
            sigma_source = SigmaSource(keys["sigma_source"])
        except ValueError:
            sigma_source = None
    geometry = Geometry.UNKNOWN
    if "geometry" in keys:
        try:
            geometry = Geometry.parse(keys["geometry"])
        except ValueError:
            geometry = Geometry.UNKNOWN
    meta: dict[str, object] = {"header": data.header[:20]}
    if ncol > 3 and sigma is None:
        meta["ignored_columns"] = ncol - 2
    return build_pattern(
        data.columns[0],
        data.columns[1],
        sigma,
        source=source,
        fmt="xye" if sigma is not None else "xy",
        radiation=radiation if radiation is not None else file_rad,
        lines=data.lines,
        sigma_source=sigma_source,
        geometry=geometry,
        meta=meta,
    )


def read_fullprof_dat(text: str, source: str | None = None, radiation: Radiation | None = None) -> Pattern:
    """A FullProf-style ``start step end`` + counts file (e.g. Fox's cime.dat) as a :class:`Pattern`."""
    lines = text.splitlines()
    header: list[str] = []
    first = None
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s or _is_comment(s):
            header.append(s)
            continue
        if not _starts_with_number(s):
            header.append(s)
            continue
        first = i
        break
    if first is None:
        raise PatternFormatError(source, "no 'start step end' line found", expected="three numbers")
    toks = lines[first].split()
    if len(toks) != 3:
        raise PatternFormatError(
            source, f"{len(toks)} numbers on the first data line", line=first + 1, expected="start step end"
        )
    start, step, end = (to_float(t, source, first + 1, "start step end") for t in toks)
    if not (np.isfinite([start, step, end]).all() and step > 0 and end > start):
        raise PatternFormatError(
            source,
            f"bad start/step/end {start} {step} {end}",
            line=first + 1,
            expected="step > 0, end > start",
        )
    tokens: list[str] = []
    value_lines: list[int] = []
    for j in range(first + 1, len(lines)):
        s = lines[j].strip()
        if not s or _is_comment(s):
            continue
        toks = s.split()
        tokens.extend(toks)
        value_lines.extend([j + 1] * len(toks))
    try:
        values = np.asarray(tokens, dtype=np.float64)
    except ValueError:
        for t, lineno in zip(tokens, value_lines, strict=True):
            to_float(t, source, lineno, "a count")
        raise PatternFormatError(source, "unreadable counts", expected="numbers") from None
    n_expected = round((end - start) / step) + 1
    if abs(len(values) - n_expected) > 1:
        raise PatternFormatError(
            source,
            f"{len(values)} intensities for start {start}, step {step}, end {end}",
            expected=f"{n_expected} values",
        )
    y = values
    tt = start + step * np.arange(y.size)
    file_rad = wavelength_from_text("\n".join(header))
    return build_pattern(
        tt,
        y,
        None,
        source=source,
        fmt="fullprof-dat",
        radiation=radiation
        if radiation is not None
        else (None if file_rad is None else make_radiation([file_rad], source=source)),
        lines=np.asarray(value_lines),
        meta={"start": start, "step": step, "end": end},
    )


def looks_like_fullprof_dat(text: str) -> bool:
    """True when the first numeric line is ``start step end`` and the next lines hold many counts."""
    numeric: list[list[str]] = []
    for raw in text.splitlines()[:200]:
        s = raw.strip()
        if not s or _is_comment(s) or not _starts_with_number(s):
            if numeric:
                break
            continue
        numeric.append(s.split())
        if len(numeric) >= 3:
            break
    if len(numeric) < 2 or len(numeric[0]) != 3:
        return False
    try:
        start, step, end = (float(t) for t in numeric[0])
        [float(t) for t in numeric[1]]
    except ValueError:
        return False
    return step > 0 and end > start and (end - start) / step > 10 and len(numeric[1]) != 3
