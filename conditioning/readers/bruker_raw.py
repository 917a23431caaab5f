"""Siemens/Bruker DIFFRAC binary .raw files, versions 1 ("RAW "), 2 ("RAW2"), 3 ("RAW1.01") and 4 ("RAW4.00").

Layouts follow the DIFFRAC^plus XCH V.5 manual, appendix A (v3), and the descriptions implemented
in xylib and GSAS-II (v1, v2, v4). All numbers are little-endian; every offset and block size is
checked against the file length before reading, so a corrupt header gives a
:class:`PatternFormatError` with the byte offset, never a huge allocation. Several ranges (scans)
-> ``bank`` selects one (1-based, default 1). σ = √max(I, 1) (counts).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from xrdsolve.refine.radiation import Radiation

from ..errors import PatternFormatError
from ..pattern import Pattern, SigmaSource
from ._common import build_pattern, make_radiation


@dataclass
class RawRange:
    """One measured range of a RAW file: start 2θ and step (degrees) and the intensities."""

    start: float
    step: float
    intensity: np.ndarray
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def two_theta(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.intensity.size)


@dataclass
class RawFile:
    version: int
    ranges: list[RawRange]
    wavelengths: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    anode: str = ""
    meta: dict[str, object] = field(default_factory=dict)


class _Buf:
    def __init__(self, data: bytes, source: str | None) -> None:
        self.data = data
        self.source = source

    def need(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise PatternFormatError(
                self.source,
                f"file ends before {what} ({size} bytes at byte {offset}; file has {len(self.data)})",
                offset=offset,
                expected=what,
            )

    def unpack(self, fmt: str, offset: int, what: str) -> tuple:
        self.need(offset, struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, offset)

    def one(self, fmt: str, offset: int, what: str) -> float:
        return self.unpack(fmt, offset, what)[0]  # type: ignore[no-any-return]

    def text(self, offset: int, size: int) -> str:
        self.need(offset, size, "a text field")
        return self.data[offset : offset + size].split(b"\x00", 1)[0].decode("latin-1").strip()

    def floats(self, offset: int, n: int, what: str) -> np.ndarray:
        self.need(offset, 4 * n, what)
        with np.errstate(invalid="ignore"):  # signalling NaNs in corrupt data; caught by validation
            return np.frombuffer(self.data, dtype="<f4", count=n, offset=offset).astype(np.float64)


def _check_steps(n: float, buf: _Buf, offset: int) -> int:
    if n <= 0 or n > len(buf.data) // 4:
        raise PatternFormatError(
            buf.source,
            f"implausible number of steps {n}",
            offset=offset,
            expected="a count that fits in the file",
        )
    return int(n)


def _v1(buf: _Buf) -> RawFile:
    ranges: list[RawRange] = []
    pos = 4
    wl: tuple[float, ...] = ()
    while True:
        steps_raw = int(buf.one("<I", pos, "the number of steps"))
        if ranges and buf.data[pos : pos + 4] == b"RAW ":
            pos += 4
            steps_raw = int(buf.one("<I", pos, "the number of steps"))
        steps = _check_steps(steps_raw, buf, pos)
        t_step, step, _mode, _unused, start = buf.unpack("<ffIIf", pos + 4, "the range header")
        ka1, ka2 = buf.unpack("<ff", pos + 68, "the wavelengths")
        following = int(buf.one("<I", pos + 148, "the following-range flag"))
        y = buf.floats(pos + 152, steps, f"{steps} intensities")
        ranges.append(RawRange(float(start), float(step), y, {"time_per_step": float(t_step)}))
        if not wl and 0.01 < ka1 < 100:
            wl = (float(ka1), float(ka2)) if 0.01 < ka2 < 100 and ka2 != ka1 else (float(ka1),)
        pos += 152 + 4 * steps
        if following == 0 or pos >= len(buf.data):
            break
        if len(ranges) > 10_000:
            raise PatternFormatError(buf.source, "too many ranges", offset=pos)
    return RawFile(1, ranges, wl, (1.0, 0.5)[: len(wl)])


def _v2(buf: _Buf) -> RawFile:
    nrange = int(buf.one("<H", 4, "the number of ranges"))
    anode = buf.text(188, 2)
    ka1, ka2, ratio = buf.unpack("<fff", 190, "the wavelengths")
    pos = 256
    ranges = []
    for _ in range(nrange):
        head_len, steps = buf.unpack("<HH", pos, "a range header")
        if head_len < 48:
            raise PatternFormatError(
                buf.source, f"range header length {head_len}", offset=pos, expected="≥ 48"
            )
        steps = _check_steps(steps, buf, pos + 2)
        t_step, step, start = buf.unpack("<fff", pos + 8, "the range start and step")
        ranges.append(
            RawRange(
                float(start),
                float(step),
                buf.floats(pos + head_len, steps, "intensities"),
                {"time_per_step": float(t_step)},
            )
        )
        pos += head_len + 4 * steps
    wl, wt = _doublet(ka1, ka2, ratio)
    return RawFile(2, ranges, wl, wt, anode)


def _doublet(ka1: float, ka2: float, ratio: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not 0.01 < ka1 < 100:
        return (), ()
    if 0.01 < ka2 < 100 and ka2 != ka1 and 0 < ratio <= 1:
        return (float(ka1), float(ka2)), (1.0, float(ratio))
    return (float(ka1),), (1.0,)


def _v3(buf: _Buf) -> RawFile:
    nrange = int(buf.one("<I", 12, "the number of ranges"))
    if nrange <= 0 or nrange > 10_000:
        raise PatternFormatError(buf.source, f"implausible number of ranges {nrange}", offset=12)
    meta: dict[str, object] = {
        "date": buf.text(16, 10),
        "time": buf.text(26, 10),
        "sample": buf.text(326, 60),
    }
    anode = buf.text(608, 4)
    _ka_mean, ka1, ka2, _kb, ratio = buf.unpack("<ddddd", 616, "the wavelengths")
    pos = 712
    ranges = []
    for _ in range(nrange):
        head_len, steps = buf.unpack("<ii", pos, "a range header")
        steps = _check_steps(steps, buf, pos + 4)
        if head_len < 256 or head_len > 1_000_000:
            raise PatternFormatError(
                buf.source, f"range header length {head_len}", offset=pos, expected="304"
            )
        start2th = float(buf.one("<d", pos + 16, "the start 2θ"))
        step = float(buf.one("<d", pos + 176, "the step"))
        t_step = float(buf.one("<f", pos + 192, "the time per step"))
        used_lambda = float(buf.one("<d", pos + 240, "the used wavelength"))
        supp = int(buf.one("<i", pos + 256, "the supplementary header size"))
        if supp < 0 or supp > len(buf.data):
            raise PatternFormatError(buf.source, f"supplementary header size {supp}", offset=pos + 256)
        data_at = pos + head_len + supp
        ranges.append(
            RawRange(
                start2th,
                step,
                buf.floats(data_at, steps, f"{steps} intensities"),
                {"time_per_step": t_step, "used_lambda": used_lambda},
            )
        )
        pos = data_at + 4 * steps
    wl, wt = _doublet(ka1, ka2, ratio)
    if not wl and ranges and 0.01 < float(ranges[0].meta["used_lambda"]) < 100:  # type: ignore[arg-type]
        wl, wt = (float(ranges[0].meta["used_lambda"]),), (1.0,)  # type: ignore[arg-type]
    return RawFile(3, ranges, wl, wt, anode, meta)


def _v4(buf: _Buf) -> RawFile:
    """RAW4.00: a sequence of typed, length-prefixed segments (after GSAS-II's reader)."""
    pos = 61
    ranges: list[RawRange] = []
    wl: tuple[float, ...] = ()
    wt: tuple[float, ...] = ()
    anode = ""
    guard = 0
    while pos + 8 <= len(buf.data):
        guard += 1
        if guard > 100_000:
            raise PatternFormatError(buf.source, "too many segments", offset=pos)
        segtype = int(buf.one("<I", pos, "a segment type"))
        if segtype in (0, 160):
            hdr = pos + 4
            scan_type = buf.text(hdr + 28, 24)
            start, step = buf.unpack("<dd", hdr + 68, "the start and step")
            nsteps = int(buf.one("<I", hdr + 84, "the number of steps"))
            nsteps = _check_steps(nsteps, buf, hdr + 84)
            datum_size, hdr_size = buf.unpack("<II", hdr + 132, "the data header sizes")
            if datum_size != 4 or hdr_size > len(buf.data):
                raise PatternFormatError(
                    buf.source, f"datum size {datum_size}", offset=hdr + 132, expected="4"
                )
            data_at = hdr + 156 + hdr_size
            y = buf.floats(data_at, nsteps, f"{nsteps} intensities")
            ranges.append(RawRange(float(start), float(step), y, {"scan_type": scan_type}))
            pos = data_at + 4 * nsteps
            continue
        seglen = max(int(buf.one("<I", pos + 4, "a segment length")), 8)
        if segtype == 30:
            _ka_mean, ka1, ka2, _kb, ratio = buf.unpack("<ddddd", pos + 8 + 64, "the wavelengths")
            wl, wt = _doublet(ka1, ka2, ratio)
            anode = buf.text(pos + 8 + 64 + 44, 4)
        pos += seglen
    if not ranges:
        raise PatternFormatError(buf.source, "no data range found", expected="a RAW4 scan segment")
    return RawFile(4, ranges, wl, wt, anode)


def parse_bruker_raw(data: bytes, source: str | None = None) -> RawFile:
    """Parse every range of a Bruker RAW file."""
    buf = _Buf(data, source)
    if data[:4] == b"RAW ":
        return _v1(buf)
    if data[:4] == b"RAW2":
        return _v2(buf)
    if data[:7] == b"RAW1.01":
        return _v3(buf)
    if data[:7] == b"RAW4.00":
        return _v4(buf)
    raise PatternFormatError(
        source, f"magic {data[:7]!r}", offset=0, expected="'RAW ', 'RAW2', 'RAW1.01' or 'RAW4.00'"
    )


def read_bruker_raw(
    data: bytes, source: str | None = None, radiation: Radiation | None = None, bank: int | None = None
) -> Pattern:
    """A :class:`Pattern` from one range of a Bruker RAW file."""
    raw = parse_bruker_raw(data, source)
    idx = 0 if bank is None else bank - 1
    if not 0 <= idx < len(raw.ranges):
        raise PatternFormatError(
            source, f"no range {idx + 1}", expected=f"a range number 1–{len(raw.ranges)}"
        )
    r = raw.ranges[idx]
    if not (np.isfinite(r.start) and np.isfinite(r.step) and r.step > 0):
        raise PatternFormatError(source, f"invalid start {r.start} / step {r.step}", expected="step > 0")
    file_rad = None
    if raw.wavelengths:
        name = f"{raw.anode.capitalize()}Ka" if raw.anode and len(raw.wavelengths) == 2 else None
        file_rad = make_radiation(raw.wavelengths, raw.weights, name=name, source=source)
    meta = {**raw.meta, **r.meta, "version": raw.version, "range": idx, "n_ranges": len(raw.ranges)}
    return build_pattern(
        r.two_theta,
        r.intensity,
        None,
        source=source,
        fmt=f"bruker-raw-v{raw.version}",
        radiation=radiation if radiation is not None else file_rad,
        sigma_source=SigmaSource.COUNTING,
        counts=True,
        meta=meta,
    )


def looks_like_bruker_raw(head: bytes) -> bool:
    return head[:4] in (b"RAW ", b"RAW2") or head[:7] in (b"RAW1.01", b"RAW4.00")
