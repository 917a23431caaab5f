"""GSAS instrument parameter files: GSAS-II ``.instprm`` (``key:value``) and old GSAS ``.prm``/``.inst``.

GSAS-II keys: Type, Lam or Lam1/Lam2 with I(L2)/I(L1), Zero (deg), Polariz., U V W (centideg²), X Y Z
(centideg), SH/L, Azimuth. Old GSAS records (fixed columns, 12-character keys): ``INS   HTYPE``
(PXCR/PNCR), ``INS  1 ICONS`` (λ1, λ2, zero in centidegrees, —, polarisation, IPOLA, Kα2/Kα1
ratio in 10-character fields), ``INS  1PRCFn`` (profile type, number of terms) and ``INS  1PRCFnm``
(the terms). A type-3 profile (pseudo-Voigt) is preferred when the file has several; its terms are
GU GV GW GP / LX LY S/L H/L, so U V W X Y and SH/L = S/L + H/L. Other types give U V W only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from xrdsolve.refine.errors import RadiationError
from xrdsolve.refine.instrument import InstrumentParameters
from xrdsolve.refine.radiation import Probe, Radiation

from ..errors import PatternFormatError


def _f(value: str, source: str | None, line: int | None, key: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise PatternFormatError(source, f"{key} = {value!r} is not a number", line=line) from None
    if not math.isfinite(v):
        raise PatternFormatError(source, f"{key} = {value!r} is not finite", line=line)
    return v


def _radiation(wl: list[float], wt: list[float], probe: Probe, source: str | None) -> Radiation:
    try:
        return Radiation(tuple(wl), tuple(wt), probe, None)
    except RadiationError as exc:
        raise PatternFormatError(source, f"invalid wavelength: {exc}") from None


def parse_instprm(text: str, source: str | None = None) -> InstrumentParameters:
    """A GSAS-II ``.instprm`` file's text -> :class:`InstrumentParameters` (first bank only)."""
    raw: dict[str, str] = {}
    lines: dict[str, int] = {}
    for i, ln in enumerate(text.splitlines(), start=1):
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        if ":" not in s:
            raise PatternFormatError(
                source, f"line {s[:40]!r} is not key:value", line=i, expected="key:value"
            )
        key, value = s.split(":", 1)
        key = key.strip()
        if key == "Bank" and "Bank" in raw:
            break  # multi-bank file: keep the first bank
        raw[key] = value.strip()
        lines[key] = i
    if "Type" not in raw:
        raise PatternFormatError(source, "no Type entry", expected="Type:PXC or Type:PNC")
    typ = raw["Type"].strip()
    if not typ.startswith(("PXC", "PNC")):
        raise PatternFormatError(
            source,
            f"instrument type {typ!r}",
            line=lines["Type"],
            expected="PXC or PNC (constant wavelength)",
        )

    def get(key: str, default: float) -> float:
        return _f(raw[key], source, lines[key], key) if key in raw else default

    probe = Probe.NEUTRON if typ.startswith("PN") else Probe.XRAY
    if "Lam" in raw:
        rad = _radiation([get("Lam", 0.0)], [1.0], probe, source)
    elif "Lam1" in raw:
        lam1, lam2 = get("Lam1", 0.0), get("Lam2", 0.0)
        ratio = get("I(L2)/I(L1)", 0.5)
        rad = (
            _radiation([lam1, lam2], [1.0, ratio], probe, source)
            if lam2 > 0 and ratio > 0
            else _radiation([lam1], [1.0], probe, source)
        )
    else:
        raise PatternFormatError(source, "no wavelength", expected="Lam or Lam1/Lam2")
    return InstrumentParameters(
        radiation=rad,
        type=typ[:3],
        polarization=get("Polariz.", 0.5 if probe is Probe.XRAY else 0.0),
        zero=get("Zero", 0.0),
        U=get("U", 0.0),
        V=get("V", 0.0),
        W=get("W", 0.0),
        X=get("X", 0.0),
        Y=get("Y", 0.0),
        Z=get("Z", 0.0),
        SH_L=get("SH/L", 0.002),
        azimuth=get("Azimuth", 0.0),
        raw=dict(raw),
    )


def _field(line: str, start: int, width: int) -> str:
    return line[start : start + width].strip()


def parse_gsas_prm(text: str, source: str | None = None, bank: int = 1) -> InstrumentParameters:
    """An old GSAS ``.prm``/``.inst`` file's text -> :class:`InstrumentParameters` for ``bank``."""
    recs: dict[str, tuple[str, int]] = {}
    for i, ln in enumerate(text.splitlines(), start=1):
        if ln.startswith("INS"):
            recs[ln[:12].rstrip()] = (ln.rstrip("\r\n"), i)
    b = f" {bank:>2d}"
    htype_rec = recs.get("INS   HTYPE") or recs.get(f"INS{b} HTYPE")
    if htype_rec is None:
        raise PatternFormatError(source, "no 'INS   HTYPE' record", expected="HTYPE PXCR or PNCR")
    htype = htype_rec[0][12:].split()[0] if htype_rec[0][12:].split() else ""
    if not htype.startswith(("PXC", "PNC")):
        raise PatternFormatError(
            source, f"HTYPE {htype!r}", line=htype_rec[1], expected="PXC… or PNC… (constant wavelength)"
        )
    probe = Probe.NEUTRON if htype.startswith("PN") else Probe.XRAY
    icons = recs.get(f"INS{b} ICONS")
    if icons is None:
        raise PatternFormatError(source, f"no 'INS{b} ICONS' record", expected="wavelength record")
    line, lno = icons
    vals = [_field(line, 12 + 10 * k, 10) for k in range(5)]
    ipola = _field(line, 62, 5)
    kratio = _field(line, 67, 10)
    lam1 = _f(vals[0], source, lno, "lambda1")
    lam2 = _f(vals[1], source, lno, "lambda2") if vals[1] else 0.0
    zero_cdeg = _f(vals[2], source, lno, "zero") if vals[2] else 0.0
    pola = _f(vals[4], source, lno, "polarization") if vals[4] else (0.5 if probe is Probe.XRAY else 0.0)
    ratio = _f(kratio, source, lno, "Ka2/Ka1 ratio") if kratio else 0.0
    if lam2 > 0 and ratio > 0:
        rad = _radiation([lam1, lam2], [1.0, ratio], probe, source)
    else:
        rad = _radiation([lam1], [1.0], probe, source)
    # profile functions: INS  1PRCFn (type, nterms, cutoff) and INS  1PRCFnm (4 terms per record)
    profiles: dict[int, tuple[int, list[float]]] = {}
    for n in range(1, 10):
        head = recs.get(f"INS{b}PRCF{n}")
        if head is None:
            continue
        toks = head[0][12:].split()
        if len(toks) < 2:
            raise PatternFormatError(
                source, "incomplete PRCF record", line=head[1], expected="type nterms cutoff"
            )
        ptype = int(_f(toks[0], source, head[1], "profile type"))
        nterms = int(_f(toks[1], source, head[1], "number of terms"))
        terms: list[float] = []
        for m in range(1, 10):
            rec = recs.get(f"INS{b}PRCF{n}{m}")
            if rec is None:
                break
            terms.extend(_f(t, source, rec[1], "profile term") for t in rec[0][12:].split())
        profiles[ptype] = (nterms, terms[:nterms])
    if not profiles:
        raise PatternFormatError(source, f"no 'INS{b}PRCF' records", expected="a profile function")
    chosen = 3 if 3 in profiles else min(profiles)
    terms = profiles[chosen][1] + [0.0] * 8
    U, V, W = terms[0], terms[1], terms[2]
    X = Y = 0.0
    shl = 0.002
    if chosen == 3:
        X, Y = terms[4], terms[5]
        shl = terms[6] + terms[7] if (terms[6] + terms[7]) > 0 else 0.002
    raw = {k: v[0][12:].strip() for k, v in recs.items()}
    raw["profile_type"] = str(chosen)
    raw["IPOLA"] = ipola
    return InstrumentParameters(
        radiation=rad,
        type=htype[:3],
        polarization=pola,
        zero=zero_cdeg / 100.0,
        U=U,
        V=V,
        W=W,
        X=X,
        Y=Y,
        SH_L=shl,
        raw=raw,
    )


def read_instrument(path: str | os.PathLike[str]) -> InstrumentParameters:
    """Read a ``.instprm`` (GSAS-II) or ``.prm``/``.inst``/``.iparm`` (GSAS) instrument file."""
    from ..io import read_text_checked

    text = read_text_checked(path)
    src = os.fspath(path)
    if any(ln.startswith("INS ") for ln in text.splitlines()[:50]):
        return parse_gsas_prm(text, src)
    if "Type:" in text:
        return parse_instprm(text, src)
    raise PatternFormatError(
        src, "not an instrument parameter file", expected="GSAS-II key:value lines or GSAS 'INS' records"
    )


def is_instrument_file(path: str | os.PathLike[str], head: str) -> bool:
    """True for content that looks like an instrument parameter file (not a pattern)."""
    return (
        head.lstrip("\ufeff").startswith("#GSAS-II instrument")
        or any(ln.startswith("INS   BANK") or ln.startswith("INS   HTYPE") for ln in head.splitlines()[:10])
        or Path(path).suffix.lower() == ".instprm"
    )
