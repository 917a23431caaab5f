"""Reading and writing pattern files: format registry, content sniffing, size cap, writers.

``read_pattern(path)`` checks the path (exists, is a file, readable, at most :data:`MAX_FILE_BYTES`)
before reading anything, picks the reader from the content (binary magic, XML root, CIF data blocks,
GSAS BANK records, a FullProf start/step/end line) with the extension as a tie-breaker, and turns
any parse failure into a :class:`PatternFormatError` naming the file.
"""

from __future__ import annotations

import logging
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrdsolve.refine.errors import RadiationError
from xrdsolve.refine.radiation import Radiation

from .errors import (
    ConditioningError,
    MissingWavelengthError,
    PatternDataError,
    PatternFormatError,
    UnknownFormatError,
)
from .pattern import Pattern
from .readers import bruker_raw, chi, columns, gsas, pdcif, xrdml
from .readers._common import decode_text
from .readers.gsas_instprm import is_instrument_file, read_instrument

__all__ = [
    "FORMATS",
    "MAX_FILE_BYTES",
    "FormatSpec",
    "list_banks",
    "read_bytes",
    "read_instrument",
    "read_pattern",
    "sniff_format",
    "write_pattern",
]

log = logging.getLogger(__name__)

#: Largest file read_pattern will open (bytes). Bigger files are refused before reading.
MAX_FILE_BYTES = 512 * 1024 * 1024

Reader = Callable[[bytes, str | None, Radiation | None, int | None], Pattern]


@dataclass(frozen=True)
class FormatSpec:
    """One supported pattern format."""

    name: str
    description: str
    extensions: tuple[str, ...]
    read: Reader
    binary: bool = False


def _text_reader(fn: Callable[..., Pattern], takes_bank: bool) -> Reader:
    def read(data: bytes, source: str | None, radiation: Radiation | None, bank: int | None) -> Pattern:
        text = decode_text(data, source)
        if takes_bank:
            return fn(text, source, radiation, bank)
        if bank not in (None, 1):
            raise PatternFormatError(source, f"bank {bank} requested, but this format holds one pattern")
        return fn(text, source, radiation)

    return read


def _gsas_text(data: bytes, source: str | None) -> str:
    """GSAS text; NUL bytes are tolerated in the free-form title (first) line only."""
    nl = data.find(b"\n")
    if nl < 0:
        return decode_text(data, source)
    title = data[:nl].replace(b"\x00", b" ")
    return decode_text(title, source) + "\n" + decode_text(data[nl + 1 :], source)


#: Registry of readable formats, by name.
FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "xy",
            "plain columns 2θ I [σ] (.xy .xye .dat .csv .txt .prn)",
            (".xy", ".xye", ".dat", ".csv", ".txt", ".prn", ".asc"),
            _text_reader(columns.read_columns, False),
        ),
        FormatSpec(
            "fullprof-dat",
            "FullProf-style start/step/end + counts (.dat)",
            (".dat",),
            _text_reader(columns.read_fullprof_dat, False),
        ),
        FormatSpec(
            "gsas",
            "GSAS powder data STD/ESD/ALT/FXY/FXYE (.gsa .gss .gsas .fxye .raw .xra .cwn)",
            (".gsa", ".gss", ".gsas", ".fxye", ".fxy", ".gda", ".xra", ".cwn"),
            lambda d, s, r, b: gsas.read_gsas(_gsas_text(d, s), s, r, b),
        ),
        FormatSpec(
            "xrdml", "PANalytical XRDML 1.x/2.x", (".xrdml",), lambda d, s, r, b: xrdml.read_xrdml(d, s, r, b)
        ),
        FormatSpec(
            "bruker-raw",
            "Bruker/Siemens RAW v1–v4 (binary)",
            (".raw",),
            lambda d, s, r, b: bruker_raw.read_bruker_raw(d, s, r, b),
            binary=True,
        ),
        FormatSpec("chi", "pyFAI / Fit2D .chi (2θ or Q)", (".chi",), _text_reader(chi.read_chi, False)),
        FormatSpec(
            "pdcif",
            "powder CIF (_pd_meas/_pd_proc loops)",
            (".cif", ".pdcif", ".rtv"),
            _text_reader(pdcif.read_pdcif, True),
        ),
    )
}

#: Formats the writers produce, by extension.
WRITABLE = (".xye", ".csv")


def sniff_format(data: bytes, path: str | os.PathLike[str] | None = None) -> str:
    """Name of the format of ``data`` (content first, extension as a tie-breaker)."""
    src = None if path is None else os.fspath(path)
    ext = Path(src).suffix.lower() if src else ""
    if not data.strip():
        raise PatternFormatError(src, "empty file", offset=0, expected="pattern data")
    if bruker_raw.looks_like_bruker_raw(data[:8]):
        return "bruker-raw"
    head = data[:4096]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        if xrdml.looks_like_xrdml(head):
            return "xrdml"
        raise UnknownFormatError(
            src, "XML that is not XRDML", offset=0, expected="an <xrdMeasurements> document"
        )
    nul = head.find(b"\x00")
    if nul >= 0:
        nl = head.find(b"\n")
        if 0 <= nul < nl and b"\nBANK" in head and b"\x00" not in head[nl:]:
            return "gsas"  # GSAS files may carry binary junk in their free-form title line
        raise UnknownFormatError(
            src,
            "binary content of no supported format",
            offset=nul,
            expected="a text pattern or a Bruker RAW / XRDML file",
        )
    text = head.decode("latin-1")
    if is_instrument_file(src or "", text):
        raise UnknownFormatError(
            src,
            "this is an instrument parameter file, not a pattern",
            expected="a pattern file (read instrument files with read_instrument)",
        )
    if pdcif.looks_like_pdcif(text):
        return "pdcif"
    if gsas.looks_like_gsas(text):
        return "gsas"
    if ext == ".chi" or "pyFAI" in text or "2-Theta Angle" in text:
        return "chi"
    if columns.looks_like_fullprof_dat(text):
        return "fullprof-dat"
    return "xy"


def check_path(path: str | os.PathLike[str], max_bytes: int | None = None) -> int:
    """Raise a project error unless ``path`` is a readable regular file of acceptable size; return its size."""
    src = os.fspath(path)
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    p = Path(src)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise PatternFormatError(src, "no such file", expected="an existing pattern file") from None
    except OSError as exc:
        raise PatternFormatError(src, f"cannot access: {exc.strerror or exc}") from None
    if p.is_dir():
        raise PatternFormatError(src, "is a directory", expected="a pattern file")
    if not p.is_file():
        raise PatternFormatError(src, "not a regular file", expected="a pattern file")
    if st.st_size > limit:
        raise PatternFormatError(
            src,
            f"file is {st.st_size / 2**20:.0f} MB, larger than the {limit / 2**20:.0f} MB limit; refusing to load it",
            expected="a powder pattern (a few MB at most); raise xrdsolve.conditioning.io.MAX_FILE_BYTES if intended",
        )
    if not os.access(src, os.R_OK):
        raise PatternFormatError(src, "permission denied", expected="a readable file")
    return int(st.st_size)


def _read_bytes_checked(path: str | os.PathLike[str]) -> bytes:
    src = os.fspath(path)
    check_path(src)
    try:
        with open(src, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PatternFormatError(src, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise PatternFormatError(src, "file grew beyond the size limit while reading")
    return data


def read_text_checked(path: str | os.PathLike[str]) -> str:
    """Text of a small file after the same checks as :func:`read_pattern`."""
    return decode_text(_read_bytes_checked(path), os.fspath(path))


def read_bytes(
    data: bytes,
    *,
    source: str | None = None,
    radiation: Radiation | str | float | None = None,
    format: str | None = None,
    bank: int | None = None,
) -> Pattern:
    """Parse pattern bytes already in memory (``source`` names them in messages)."""
    rad = None
    if radiation is not None:
        try:
            rad = Radiation.parse(radiation)
        except RadiationError as exc:
            raise PatternFormatError(source, f"bad radiation {radiation!r}: {exc}") from None
    fmt = format or sniff_format(data, source)
    if fmt not in FORMATS:
        raise UnknownFormatError(source, f"unknown format {fmt!r}", expected="one of " + ", ".join(FORMATS))
    try:
        pattern = FORMATS[fmt].read(data, source, rad, bank)
    except (PatternFormatError, MissingWavelengthError):
        raise
    except PatternDataError as exc:
        raise PatternFormatError(source, str(exc)) from None
    except RadiationError as exc:
        raise PatternFormatError(source, f"invalid radiation in file: {exc}") from None
    except ConditioningError:
        raise
    except (
        ValueError,
        IndexError,
        KeyError,
        OverflowError,
        struct.error,
        ET.ParseError,
        UnicodeError,
    ) as exc:
        # A reader hit malformed content in a way it did not anticipate; report it as a format error.
        log.debug("reader %s failed on %s", fmt, source, exc_info=True)
        raise PatternFormatError(
            source, f"cannot be read as {fmt}: {type(exc).__name__}: {exc}", expected=FORMATS[fmt].description
        ) from None
    if radiation is None and pattern.radiation is None:
        log.info("%s: no wavelength in the file; give one for Q/d", source)
    return pattern


def read_pattern(
    path: str | os.PathLike[str],
    radiation: Radiation | str | float | None = None,
    format: str | None = None,
    *,
    bank: int | None = None,
) -> Pattern:
    """Read a powder pattern file.

    Parameters
    ----------
    path : the file; its content decides the format (the extension only breaks ties).
    radiation : overrides (or supplies) the file's radiation: a preset ('CuKa'), a wavelength in Å, …
    format : force a format name from :data:`FORMATS`.
    bank : which bank/scan/range/data block (1-based; default the first) in multi-pattern files.
    """
    src = os.fspath(path)
    data = _read_bytes_checked(src)
    return read_bytes(data, source=src, radiation=radiation, format=format, bank=bank)


def list_banks(path: str | os.PathLike[str]) -> list[str]:
    """Descriptions of the banks/scans/ranges/blocks a file holds (one entry for single-pattern files)."""
    src = os.fspath(path)
    data = _read_bytes_checked(src)
    fmt = sniff_format(data, src)
    if fmt == "gsas":
        return [b.describe() for b in gsas.list_banks(_gsas_text(data, src), src)]
    if fmt == "bruker-raw":
        raw = bruker_raw.parse_bruker_raw(data, src)
        return [
            f"range {i + 1}: {r.intensity.size} points from {r.start:.4f}°" for i, r in enumerate(raw.ranges)
        ]
    p = read_bytes(data, source=src, format=fmt)
    n = int(p.meta.get("n_scans", p.meta.get("n_blocks", 1)))
    return [f"{fmt} pattern {i + 1}" for i in range(n)]


# -- writers -----------------------------------------------------------------------------------------
def _header(pattern: Pattern) -> list[str]:
    lines = ["xrdsolve pattern; columns: 2theta (deg), intensity, sigma"]
    if pattern.radiation is not None:
        r = pattern.radiation
        lines.append(
            "xrdsolve-radiation: wavelengths="
            + ",".join(repr(w) for w in r.wavelengths)
            + " weights="
            + ",".join(repr(w) for w in r.weights)
            + f" probe={r.probe.value} name={r.name}"
        )
    lines.append(f"xrdsolve-sigma_source: {pattern.sigma_source.value}")
    lines.append(f"xrdsolve-geometry: {pattern.geometry.value}")
    if pattern.meta.get("source"):
        lines.append(f"converted from: {pattern.meta['source']}")
    return lines


def write_pattern(pattern: Pattern, path: str | os.PathLike[str]) -> Path:
    """Write ``pattern`` as .xye (space separated) or .csv; numbers are written with ``repr`` so a
    read back gives bit-identical arrays, radiation, σ source and geometry."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITABLE:
        raise UnknownFormatError(
            os.fspath(p),
            f"cannot write {ext or 'files without extension'}",
            expected="an output name ending in " + " or ".join(WRITABLE),
        )
    sep = "," if ext == ".csv" else " "
    out = ["# " + h for h in _header(pattern)]
    if ext == ".csv":
        out.append("two_theta,intensity,sigma")
    rows = np.column_stack([pattern.two_theta, pattern.intensity, pattern.sigma])
    out.extend(sep.join(repr(float(v)) for v in row) for row in rows)
    try:
        p.write_text("\n".join(out) + "\n", encoding="utf-8")
    except OSError as exc:
        raise PatternFormatError(os.fspath(p), f"cannot write: {exc.strerror or exc}") from None
    return p
