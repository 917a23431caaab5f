"""Helpers shared by the pattern readers: decoding, number parsing, validation with line numbers.

Policy for bad values (applies to every reader):

* NaN/inf in 2θ or intensity -> :class:`PatternFormatError` naming the line (or point).
* |intensity| above :data:`MAX_INTENSITY` (1e15) is an error (squares would overflow).
* Negative intensities are accepted (background-subtracted data); σ then comes from the file or is
  flagged :attr:`SigmaSource.UNKNOWN`, never from counting statistics.
* σ given as NaN or 0 (GSAS's "excluded point" convention) is treated as missing and filled with
  √max(I, 1); the number filled is recorded in ``meta["sigma_filled"]``. Negative or infinite σ is
  an error.
* 2θ must increase strictly; a wholly decreasing scan is reversed (``meta["reversed"] = True``);
  anything else (a step back, a duplicate) is an error naming the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from xrdsolve.refine.errors import RadiationError
from xrdsolve.refine.radiation import Geometry, Radiation

from ..errors import PatternFormatError
from ..pattern import COUNT_SIGMA_FLOOR, Pattern, SigmaSource

#: Largest |intensity| accepted; beyond it squares (weights, χ²) overflow double precision.
MAX_INTENSITY = 1e15

_WAVELENGTH_RE = re.compile(
    r"(?i)(?:calibrated\s+)?(?:wavelength|lambda|wave\s*length)\s*(?:\(\s*[aå]\w*\s*\))?\s*[=:]?\s*"
    r"([0-9]*\.[0-9]+|[0-9]+(?:\.[0-9]*)?)"
)


def decode_text(data: bytes, source: str | None) -> str:
    """Bytes -> text (UTF-8 with or without BOM, else Latin-1); refuses binary content (NUL bytes)."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise PatternFormatError(source, "binary content (NUL byte) in a text format", offset=nul)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def to_float(token: str, source: str | None, line: int, what: str) -> float:
    """Parse one number; a clear error naming the line otherwise."""
    try:
        return float(token)
    except ValueError:
        raise PatternFormatError(
            source, f"cannot read {token!r} as a number", line=line, expected=what
        ) from None


def wavelength_from_text(text: str) -> float | None:
    """A wavelength (Å) mentioned in free header text ('wavelength=1.54184', 'Calibrated wavelength = 0.41')."""
    m = _WAVELENGTH_RE.search(text)
    if not m:
        return None
    try:
        value = float(m.group(1))
    except ValueError:
        return None
    return value if 0.01 < value < 100.0 else None


def make_radiation(
    wavelengths: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    probe: str = "xray",
    name: str | None = None,
    source: str | None = None,
) -> Radiation:
    """Radiation from file values, converting invalid values into a format error."""
    try:
        return Radiation(
            tuple(float(w) for w in wavelengths),
            tuple(float(w) for w in (weights if weights is not None else [1.0] * len(wavelengths))),
            probe,  # type: ignore[arg-type]
            name,
        )
    except (RadiationError, ValueError) as exc:
        raise PatternFormatError(source, f"invalid wavelength in file: {exc}") from None


def resolve_radiation(given: Radiation | str | float | None, from_file: Radiation | None) -> Radiation | None:
    """The user's radiation wins over the file's; either may be None."""
    if given is not None:
        return Radiation.parse(given)
    return from_file


def _where(lines: np.ndarray | None, i: int) -> dict[str, int]:
    if lines is not None and 0 <= i < len(lines):
        return {"line": int(lines[i])}
    return {}


def build_pattern(
    two_theta: Any,
    intensity: Any,
    sigma: Any | None,
    *,
    source: str | None,
    fmt: str,
    radiation: Radiation | None,
    lines: np.ndarray | None = None,
    counts: bool | None = None,
    sigma_source: SigmaSource | None = None,
    geometry: Geometry | str = Geometry.UNKNOWN,
    meta: dict[str, Any] | None = None,
) -> Pattern:
    """Validate arrays read from a file (with line numbers for messages) and build a :class:`Pattern`.

    ``lines`` gives the 1-based source line of every point, so errors can name it.
    """
    tt = np.asarray(two_theta, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    meta = dict(meta or {})
    meta.setdefault("source", source)
    meta["format"] = fmt
    if tt.ndim != 1 or tt.shape != y.shape:
        raise PatternFormatError(source, f"2θ and intensity lengths differ ({tt.size} vs {y.size})")
    if tt.size < 2:
        raise PatternFormatError(source, f"only {tt.size} data point(s)", expected="at least 2 points")
    for name, arr in (("2θ", tt), ("intensity", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise PatternFormatError(
                source,
                f"non-finite {name} value {arr[i]} at point {i + 1}",
                expected="finite numbers",
                **_where(lines, i),
            )
    huge = np.abs(y) > MAX_INTENSITY
    if huge.any():
        i = int(np.argmax(huge))
        raise PatternFormatError(
            source,
            f"implausible intensity {y[i]:.3g} at point {i + 1}",
            expected=f"|intensity| ≤ {MAX_INTENSITY:.0e}",
            **_where(lines, i),
        )
    steps = np.diff(tt)
    if tt.size > 1 and (steps < 0).all():
        tt, y = tt[::-1].copy(), y[::-1].copy()
        if sigma is not None:
            sigma = np.asarray(sigma, dtype=np.float64)[::-1].copy()
        lines = None if lines is None else lines[::-1]
        steps = np.diff(tt)
        meta["reversed"] = True
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        kind = "repeats" if steps[i - 1] == 0 else "goes back to"
        raise PatternFormatError(
            source,
            f"2θ {kind} {tt[i]:.6g}° after {tt[i - 1]:.6g}° (point {i + 1})",
            expected="strictly increasing 2θ",
            **_where(lines, i),
        )
    if sigma is not None:
        s = np.asarray(sigma, dtype=np.float64).copy()
        if s.shape != y.shape:
            raise PatternFormatError(source, f"σ has {s.size} values for {y.size} points")
        bad = np.isinf(s) | (s < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise PatternFormatError(
                source, f"invalid σ {s[i]} at point {i + 1}", expected="σ ≥ 0", **_where(lines, i)
            )
        missing = ~np.isfinite(s) | (s == 0)
        if missing.all():
            sigma = None
        else:
            if missing.any():
                s[missing] = np.sqrt(np.maximum(np.abs(y[missing]), COUNT_SIGMA_FLOOR))
                meta["sigma_filled"] = int(missing.sum())
            pattern = Pattern(
                tt, y, s, sigma_source or SigmaSource.FILE, radiation, Geometry.parse(geometry), meta
            )
            return pattern
    if counts is True and (y < 0).any():
        counts = None  # negative "counts": background-subtracted, not raw counts
    if sigma_source is SigmaSource.COUNTING and counts is not False and not (y < 0).any():
        counts = True
    return Pattern.from_arrays(tt, y, None, radiation=radiation, geometry=geometry, counts=counts, meta=meta)


def check_count(n: float, limit: int, source: str | None, what: str, **where: int) -> int:
    """An integer count from a header, bounded by what the file could possibly hold."""
    if not math.isfinite(n) or n < 0 or n != int(n) or n > limit:
        raise PatternFormatError(
            source, f"implausible {what} {n!r}", expected=f"an integer between 0 and {limit}", **where
        )
    return int(n)
