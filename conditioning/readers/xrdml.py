"""PANalytical/Malvern .xrdml (schema 1.x and 2.x), read with :mod:`xml.etree.ElementTree`.

Wavelengths from ``usedWavelength`` (Kα1, Kα2 and their ratio; ``intended="K-Beta"`` gives Kβ alone),
2θ from ``positions axis="2Theta"`` (start/end or an explicit list), intensities from ``counts``
(2.x) or ``intensities`` (1.x). σ: counts -> √max(c, 1); counts per second -> √(cps·t)/t with the
counting time (``commonCountingTime`` or ``countingTimes``). Several ``scan`` elements -> ``bank``
selects one (1-based, default 1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from xrdsolve.refine.radiation import Geometry, Radiation

from ..errors import PatternFormatError
from ..pattern import COUNT_SIGMA_FLOOR, Pattern, SigmaSource
from ._common import build_pattern, make_radiation


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(el: ET.Element, name: str) -> ET.Element | None:
    for child in el.iter():
        if _local(child.tag) == name:
            return child
    return None


def _findall(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el.iter() if _local(c.tag) == name]


def _floats(el: ET.Element, source: str | None, what: str) -> np.ndarray:
    text = (el.text or "").split()
    try:
        return np.asarray([float(t) for t in text], dtype=np.float64)
    except ValueError:
        raise PatternFormatError(source, f"non-numeric value in <{_local(el.tag)}>", expected=what) from None


def _float_child(el: ET.Element | None, name: str, source: str | None) -> float | None:
    if el is None:
        return None
    c = _find(el, name)
    if c is None or c.text is None or not c.text.strip():
        return None
    try:
        return float(c.text)
    except ValueError:
        raise PatternFormatError(source, f"<{name}> is not a number: {c.text!r}") from None


def parse_radiation(root: ET.Element, source: str | None) -> Radiation | None:
    """The ``usedWavelength`` element as a :class:`Radiation` (None if absent)."""
    uw = _find(root, "usedWavelength")
    if uw is None:
        return None
    ka1 = _float_child(uw, "kAlpha1", source)
    ka2 = _float_child(uw, "kAlpha2", source)
    kb = _float_child(uw, "kBeta", source)
    ratio = _float_child(uw, "ratioKAlpha2KAlpha1", source)
    intended = (uw.get("intended") or "").lower()
    anode = _find(root, "anodeMaterial")
    element = (anode.text or "").strip().capitalize() if anode is not None else ""
    if "beta" in intended and kb:
        return make_radiation([kb], name=f"{element}Kb" if element else None, source=source)
    if ka1 is None:
        return None
    if ka2 and ratio and ratio > 0:
        return make_radiation(
            [ka1, ka2], [1.0, ratio], name=f"{element}Ka" if element else None, source=source
        )
    return make_radiation([ka1], name=f"{element}Ka1" if element else None, source=source)


def read_xrdml(
    data: bytes, source: str | None = None, radiation: Radiation | None = None, bank: int | None = None
) -> Pattern:
    """A :class:`Pattern` from the bytes of an .xrdml file."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line, _col = exc.position
        raise PatternFormatError(
            source, f"malformed XML ({exc.msg if hasattr(exc, 'msg') else exc})", line=line
        ) from None
    if _local(root.tag) != "xrdMeasurements":
        raise PatternFormatError(source, f"root element <{_local(root.tag)}>", expected="<xrdMeasurements>")
    scans = _findall(root, "scan")
    if not scans:
        raise PatternFormatError(source, "no <scan> element", expected="at least one scan")
    idx = 0 if bank is None else bank - 1
    if not 0 <= idx < len(scans):
        raise PatternFormatError(source, f"no scan {idx + 1}", expected=f"a scan number 1–{len(scans)}")
    scan = scans[idx]
    dp = _find(scan, "dataPoints")
    if dp is None:
        raise PatternFormatError(source, "scan without <dataPoints>")
    counts_el = _find(dp, "counts")
    inten_el = counts_el if counts_el is not None else _find(dp, "intensities")
    if inten_el is None:
        raise PatternFormatError(source, "no <counts> or <intensities>", expected="measured intensities")
    y = _floats(inten_el, source, "intensities")
    n = y.size
    if n < 2:
        raise PatternFormatError(source, f"{n} intensities", expected="at least 2 points")
    tt = None
    for pos in _findall(dp, "positions"):
        if (pos.get("axis") or "").lower() != "2theta":
            continue
        lst = _find(pos, "listPositions")
        if lst is not None:
            tt = _floats(lst, source, "2θ positions")
        else:
            start = _float_child(pos, "startPosition", source)
            end = _float_child(pos, "endPosition", source)
            if start is None or end is None:
                raise PatternFormatError(source, "2Theta positions without start/end")
            tt = np.linspace(start, end, n)
        break
    if tt is None:
        raise PatternFormatError(source, "no 2Theta positions", expected='<positions axis="2Theta">')
    if tt.size != n:
        raise PatternFormatError(source, f"{tt.size} 2θ positions for {n} intensities")
    unit = (inten_el.get("unit") or "counts").lower()
    t_common = _float_child(dp, "commonCountingTime", source)
    times_el = _find(dp, "countingTimes")
    times = _floats(times_el, source, "counting times") if times_el is not None else None
    t: np.ndarray | float | None = times if times is not None and times.size == n else t_common
    meta: dict[str, object] = {"scan": idx, "n_scans": len(scans), "intensity_unit": unit}
    atten = _find(dp, "beamAttenuationFactors")
    if atten is not None:
        meta["beam_attenuation"] = True
    uw = _find(root, "usedWavelength")
    if uw is not None:
        meta["intended_wavelength"] = uw.get("intended")
    xm = _find(root, "xrdMeasurement")
    mode = (xm.get("sampleMode") or "").lower() if xm is not None else ""
    geometry = (
        Geometry.BRAGG_BRENTANO
        if mode == "reflection"
        else (Geometry.DEBYE_SCHERRER if mode == "transmission" else Geometry.UNKNOWN)
    )
    sigma = None
    if "per second" in unit or "cps" in unit:
        if t is not None and np.all(np.asarray(t) > 0):
            c = np.maximum(y * t, COUNT_SIGMA_FLOOR)
            sigma = np.sqrt(c) / t
        source_kind = SigmaSource.COUNTING if sigma is not None else SigmaSource.UNKNOWN
    else:
        source_kind = SigmaSource.COUNTING
    if t is not None:
        meta["counting_time_s"] = float(np.mean(t))
    pattern = build_pattern(
        tt,
        y,
        sigma,
        source=source,
        fmt="xrdml",
        radiation=radiation if radiation is not None else parse_radiation(root, source),
        sigma_source=source_kind,
        geometry=geometry,
        meta=meta,
    )
    return pattern


def looks_like_xrdml(head: bytes) -> bool:
    return b"xrdMeasurements" in head or b"xrdml" in head.lower()
