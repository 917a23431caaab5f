"""read_pattern on bad input: each case a specific project exception naming the file and place."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from xrdsolve.conditioning import (
    MissingWavelengthError,
    Pattern,
    PatternFormatError,
    SigmaSource,
    UnknownFormatError,
    read_pattern,
    write_pattern,
)
from xrdsolve.conditioning import io as cio
from xrdsolve.conditioning.io import read_bytes, sniff_format
from xrdsolve.conditioning.readers.bruker_raw import read_bruker_raw
from xrdsolve.conditioning.readers.columns import parse_columns, read_columns
from xrdsolve.conditioning.readers.gsas import list_banks, read_gsas
from xrdsolve.conditioning.readers.xrdml import read_xrdml


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_empty_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "e.xy", "")
    with pytest.raises(PatternFormatError, match=r"e\.xy.*empty"):
        read_pattern(p)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PatternFormatError, match="no such file"):
        read_pattern(tmp_path / "nope.xy")
    with pytest.raises(PatternFormatError, match="is a directory"):
        read_pattern(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "x.xy", "1 2\n2 3\n")
    p.chmod(0)
    with pytest.raises(PatternFormatError, match="permission"):
        read_pattern(p)


def test_huge_file_refused_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "huge.xy"
    with open(p, "wb") as fh:  # sparse 3 GB file: no disk used, never read
        fh.truncate(3 * 2**30)
    with pytest.raises(PatternFormatError, match="larger than the 512 MB limit"):
        read_pattern(p)


def test_random_bytes_unknown(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = _write(tmp_path, "r.bin", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes() + b"\x00")
    with pytest.raises(PatternFormatError) as ei:
        read_pattern(p)
    assert "r.bin" in str(ei.value)


def test_unknown_text(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.txt", "hello world\nthis is not a pattern\n")
    with pytest.raises(PatternFormatError, match="no numeric data"):
        read_pattern(p)


def test_instrument_file_is_not_a_pattern(tmp_path: Path) -> None:
    p = _write(tmp_path, "i.instprm", "#GSAS-II instrument parameter file\nType:PXC\nLam:1.5\n")
    with pytest.raises(UnknownFormatError, match="instrument parameter file"):
        read_pattern(p)


def test_nan_and_inf_name_the_line() -> None:
    with pytest.raises(PatternFormatError, match="line 3") as ei:
        read_columns("# h\n10 5\n10.1 nan\n10.2 7\n", "f.xy")
    assert ei.value.line == 3
    with pytest.raises(PatternFormatError, match="line 2"):
        read_columns("10 5\ninf 6\n10.2 7\n", "f.xy")


def test_negative_counts_allowed_sigma_unknown() -> None:
    p = read_columns("10 5\n10.1 -3\n10.2 7\n", "f.xy")
    assert p.intensity[1] == -3
    assert p.sigma_source is SigmaSource.UNKNOWN


def test_negative_sigma_rejected() -> None:
    with pytest.raises(PatternFormatError, match="line 2"):
        read_columns("10 5 1\n10.1 6 -1\n10.2 7 1\n", "f.xye")


def test_nan_sigma_filled_from_counts() -> None:
    p = read_columns("10 100 nan\n10.1 400 20\n10.2 9 3\n", "f.xye")
    assert p.sigma[0] == pytest.approx(10.0) and p.meta["sigma_filled"] == 1
    assert p.sigma_source is SigmaSource.FILE


def test_non_monotonic_and_duplicate() -> None:
    with pytest.raises(PatternFormatError, match=r"line 3.*strictly increasing") as ei:
        read_columns("10 1\n10.2 2\n10.1 3\n", "f.xy")
    assert "goes back" in str(ei.value)
    with pytest.raises(PatternFormatError, match="repeats"):
        read_columns("10 1\n10.1 2\n10.1 3\n", "f.xy")


def test_descending_scan_reversed() -> None:
    p = read_columns("10.2 3\n10.1 2\n10 1\n", "f.xy")
    assert list(p.two_theta) == [10.0, 10.1, 10.2] and p.meta["reversed"]


def test_mismatched_columns() -> None:
    with pytest.raises(PatternFormatError, match=r"line 3.*2 columns") as ei:
        read_columns("10 1 1\n10.1 2 1\n10.2 3\n", "f.xye")
    assert ei.value.expected == "3 columns"


def test_delimiters_headers_comments() -> None:
    csv = "two_theta,intensity,esd\n# comment\n10,1,1\n10.5,4,2\n11,9,3\n"
    p = read_columns(csv, "f.csv")
    assert list(p.sigma) == [1, 2, 3]
    semi = "! header\n10;1\n10.5;4\n"
    assert len(read_columns(semi, "f.txt")) == 2
    named = "2Theta Intensity\n10 1\n10.5 4\n"
    assert len(read_columns(named, "f.xy")) == 2
    tab = "10\t1\t5\n10.5\t4\t5\n"
    assert parse_columns(tab).delimiter == "\t"
    # a header naming the third of four columns something else: σ not taken from it
    four = "# 2theta yobs ycalc ydiff\n10 1 2 3\n10.5 4 5 6\n"
    p4 = read_columns(four, "f.dat")
    assert p4.meta["ignored_columns"] == 2


def test_fullprof_dat_count_mismatch() -> None:
    counts = " ".join(str(i) for i in range(1, 17))
    p = read_columns(f"  10.0 0.1 11.5\n{counts}\n", "f.dat")
    assert len(p) == 16 and p.two_theta[-1] == pytest.approx(11.5) and p.meta["format"] == "fullprof-dat"
    with pytest.raises(PatternFormatError, match="intensities for start"):
        read_columns(f"  10.0 0.1 20.0\n{counts}\n{counts}\n", "f.dat")


GSAS_TWO_BANKS = (
    "title\n"
    "BANK 1 4 1 CONST 1000 10 0 0 ESD\n"
    "     100      10     400      20     900      30      16       4\n"
    "BANK 2 3 1 CONST 2000 5 0 0 STD\n"
    " 1   100 2   400 1     9\n"
)


def test_gsas_banks_and_selection() -> None:
    banks = list_banks(GSAS_TWO_BANKS)
    assert [b.number for b in banks] == [1, 2]
    p1 = read_gsas(GSAS_TWO_BANKS, "g.gsa")
    assert list(p1.two_theta) == pytest.approx([10.0, 10.1, 10.2, 10.3])
    assert list(p1.sigma) == [10, 20, 30, 4]
    p2 = read_gsas(GSAS_TWO_BANKS, "g.gsa", bank=2)
    assert list(p2.two_theta) == pytest.approx([20.0, 20.05, 20.1])
    assert p2.sigma[1] == pytest.approx(np.sqrt(400 / 2))  # 2 counters
    with pytest.raises(PatternFormatError, match="no bank 3"):
        read_gsas(GSAS_TWO_BANKS, "g.gsa", bank=3)


def test_gsas_alt_and_truncation() -> None:
    row = f"{32000:8d}{100000:7d}{10000:5d}{32320:8d}{400000:7d}{20000:5d}\n"
    alt = "t\nBANK 1 2 1 CONST 0 0 0 0 ALT\n" + row
    p = read_gsas(alt, "a.gsa")
    assert list(p.two_theta) == pytest.approx([10.0, 10.1])
    assert list(p.intensity) == pytest.approx([100.0, 400.0])
    assert list(p.sigma) == pytest.approx([10.0, 20.0])
    trunc = "t\nBANK 1 10 1 CONST 1000 10 0 0 STD\n   100   200\n"
    with pytest.raises(PatternFormatError, match="truncated") as ei:
        read_gsas(trunc, "t.gsa")
    assert ei.value.line == 3


def test_gsas_tof_refused() -> None:
    row = f"{32000:8d}{100000:7d}{10000:5d}{32320:8d}{400000:7d}{20000:5d}\n"
    tof = "t\nBANK 1 2 1 RALF 32000 32 32000 0.0005 ALT\n" + row
    with pytest.raises(PatternFormatError, match="time-of-flight"):
        read_gsas(tof, "t.gsa")


XRDML_1X = b"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.0">
 <xrdMeasurement measurementType="Scan" sampleMode="Transmission">
  <usedWavelength intended="K-Alpha 1"><kAlpha1 unit="Angstrom">0.709319</kAlpha1>
  <kAlpha2 unit="Angstrom">0.713609</kAlpha2><ratioKAlpha2KAlpha1>0.5</ratioKAlpha2KAlpha1></usedWavelength>
  <scan><dataPoints>
   <positions axis="2Theta" unit="deg"><listPositions>5 6 7</listPositions></positions>
   <commonCountingTime unit="seconds">4.0</commonCountingTime>
   <intensities unit="counts per second">25 100 0</intensities>
  </dataPoints></scan>
 </xrdMeasurement></xrdMeasurements>"""


def test_xrdml_1x_cps_sigma() -> None:
    p = read_xrdml(XRDML_1X, "m.xrdml")
    assert list(p.two_theta) == [5, 6, 7]
    # cps 25 over 4 s = 100 counts -> σ = 10/4 counts per second
    assert p.sigma[0] == pytest.approx(2.5) and p.sigma[1] == pytest.approx(5.0)
    assert p.radiation is not None and p.radiation.wavelengths == (0.709319, 0.713609)
    assert p.geometry.value == "debye-scherrer"
    with pytest.raises(PatternFormatError, match="malformed XML"):
        read_xrdml(XRDML_1X[:300], "m.xrdml")


def _raw_v1(start: float, step: float, y: list[float]) -> bytes:
    head = b"RAW " + struct.pack("<IffIIf", len(y), 1.0, step, 0, 0, start)
    head += struct.pack("<fff", -1e6, -1e6, -1e6) + b"sample".ljust(32, b"\0")
    head += struct.pack("<ff", 1.5406, 1.54439) + b"\0" * 72 + struct.pack("<I", 0)
    return head + struct.pack(f"<{len(y)}f", *y)


def test_bruker_v1_layout_and_truncation() -> None:
    data = _raw_v1(20.0, 0.02, [5, 6, 7, 8])
    p = read_bruker_raw(data, "v1.raw")
    assert list(p.two_theta) == pytest.approx([20.0, 20.02, 20.04, 20.06])
    assert list(p.intensity) == [5, 6, 7, 8]
    assert p.radiation is not None and p.radiation.wavelengths == pytest.approx((1.5406, 1.54439))
    with pytest.raises(PatternFormatError, match="file ends before") as ei:
        read_bruker_raw(data[:-6], "v1.raw")
    assert ei.value.offset is not None


def test_sniffing_ignores_misleading_extension(real_data: Path) -> None:
    data = (real_data / "yag_garnet_neutron_d1a/garnet.raw").read_bytes()
    assert sniff_format(data, "garnet.raw") == "gsas"
    assert sniff_format(b"RAW1.01\0" + b"\0" * 100, "x.xy") == "bruker-raw"


def test_write_read_roundtrip_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tt = np.cumsum(rng.uniform(0.001, 0.05, 500)) + 3.0
    y = rng.uniform(-5, 1e5, 500)
    s = rng.uniform(0.1, 300, 500)
    p = Pattern.from_arrays(tt, y, s, radiation="CuKa", geometry="bragg-brentano")
    for ext in (".xye", ".csv"):
        out = write_pattern(p, tmp_path / f"p{ext}")
        q = read_pattern(out)
        assert np.array_equal(q.two_theta, p.two_theta)
        assert np.array_equal(q.intensity, p.intensity)
        assert np.array_equal(q.sigma, p.sigma)
        assert q.radiation == p.radiation
        assert q.sigma_source is p.sigma_source and q.geometry is p.geometry
    counted = Pattern.from_arrays(tt, np.round(np.abs(y)), None, radiation=0.4137)
    q = read_pattern(write_pattern(counted, tmp_path / "c.xye"))
    assert q.sigma_source is SigmaSource.COUNTING and np.array_equal(q.sigma, counted.sigma)


def test_write_unknown_extension(tmp_path: Path) -> None:
    p = Pattern.from_arrays([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(UnknownFormatError, match=r"\.xye or \.csv"):
        write_pattern(p, tmp_path / "x.gsa")


def test_q_without_wavelength() -> None:
    with pytest.raises(MissingWavelengthError):
        read_bytes(b"# Unit: q_A^-1\n1.0 5\n2.0 6\n", source="q.chi")
    p = read_bytes(b"# Unit: q_nm^-1\n10.0 5\n20.0 6\n", source="q.chi", radiation=1.0)
    assert p.two_theta[0] == pytest.approx(2 * np.degrees(np.arcsin(1.0 * 1.0 / (4 * np.pi))))


def test_size_cap_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, "s.xy", "1 2\n2 3\n" * 100)
    monkeypatch.setattr(cio, "MAX_FILE_BYTES", 100)
    with pytest.raises(PatternFormatError, match="limit"):
        read_pattern(p)
