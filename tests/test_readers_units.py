"""Reader units on small strings/bytes (the parse functions are testable without files)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from xrdsolve.conditioning import MissingWavelengthError, PatternFormatError, SigmaSource
from xrdsolve.conditioning.readers.bruker_raw import parse_bruker_raw, read_bruker_raw
from xrdsolve.conditioning.readers.chi import detect_unit, read_chi
from xrdsolve.conditioning.readers.gsas import read_gsas
from xrdsolve.conditioning.readers.gsas_instprm import parse_gsas_prm, parse_instprm
from xrdsolve.conditioning.readers.pdcif import read_pdcif
from xrdsolve.refine.radiation import Probe


def _raw_v2(ranges: list[tuple[float, float, list[float]]]) -> bytes:
    """RAW2 layout: range count (u16) at 4, anode at 188, λ1 λ2 ratio (f32) at 190; ranges from 256."""
    head = bytearray(256)
    head[0:4] = b"RAW2"
    struct.pack_into("<H", head, 4, len(ranges))
    head[188:190] = b"Co"
    struct.pack_into("<fff", head, 190, 1.78897, 1.79285, 0.5)
    out = bytes(head)
    for start, step, y in ranges:
        rh = bytearray(48)
        struct.pack_into("<HH", rh, 0, 48, len(y))
        struct.pack_into("<fff", rh, 8, 2.0, step, start)
        out += bytes(rh) + struct.pack(f"<{len(y)}f", *y)
    return out


def test_bruker_v2_two_ranges() -> None:
    data = _raw_v2([(10.0, 0.05, [1, 2, 3]), (40.0, 0.1, [7, 8])])
    raw = parse_bruker_raw(data, "v2.raw")
    assert raw.version == 2 and len(raw.ranges) == 2
    p = read_bruker_raw(data, "v2.raw", bank=2)
    assert list(p.two_theta) == pytest.approx([40.0, 40.1]) and list(p.intensity) == [7, 8]
    assert p.radiation is not None and p.radiation.name == "CoKa"
    assert p.radiation.wavelengths == pytest.approx((1.78897, 1.79285), abs=1e-6)
    with pytest.raises(PatternFormatError, match="no range 3"):
        read_bruker_raw(data, "v2.raw", bank=3)


def test_bruker_implausible_step_count() -> None:
    data = bytearray(_raw_v2([(10.0, 0.05, [1, 2, 3])]))
    struct.pack_into("<H", data, 258, 60000)  # more steps than bytes in the file
    with pytest.raises(PatternFormatError, match="implausible number of steps"):
        read_bruker_raw(bytes(data), "v2.raw")


def test_chi_fit2d_header() -> None:
    text = "LaB6 integrated\n2-Theta Angle (Degrees)\nIntensity\n       3\n 5.0 10\n 5.1 20\n 5.2 30\n"
    p = read_chi(text, "f.chi")
    assert list(p.two_theta) == pytest.approx([5.0, 5.1, 5.2]) and p.meta["x_unit"] == "2th_deg"


def test_chi_units() -> None:
    assert detect_unit(["# Unit: 2th_deg"]) == "2th_deg"
    assert detect_unit(["# == pyFAI calibration ==", "# Unit: q_nm^-1"]) == "q_nm^-1"
    assert detect_unit(["# chi_Q chi_I"]) == "q_A^-1"
    assert detect_unit(["# Q (Angstroms-1)"]) == "q_A^-1"
    text = "# Wavelength: 1.0e-10\n# Unit: q_A^-1\n# q I sigma\n1.0 5 1\n2.0 6 1\n"
    p = read_chi(text, "q.chi")  # pyFAI writes the wavelength in metres
    assert p.radiation is not None and p.radiation.wavelengths == pytest.approx((1.0,))
    with pytest.raises(MissingWavelengthError):
        read_chi("# Unit: q_A^-1\n1.0 5\n2.0 6\n", "q.chi")
    with pytest.raises(PatternFormatError, match="x unit"):
        read_chi("# I do not know\n1.0 5\n2.0 6\n", "u.chi")


PDCIF = """data_test
_diffrn_radiation_probe x-ray
loop_
 _diffrn_radiation_wavelength
 _diffrn_radiation_wavelength_wt
 1.540593 1.0
 1.544427 0.5
loop_
 _pd_meas_2theta_scan
 _pd_meas_counts_total
 _pd_proc_ls_weight
 10.00 100 0.01
 10.02 400(21) 0.0025
 10.04 0 0
 10.06 . .
"""


def test_pdcif_scan_loop_and_su() -> None:
    with pytest.raises(PatternFormatError, match="non-finite intensity"):
        read_pdcif(PDCIF, "t.cif")
    p = read_pdcif(PDCIF.replace(" 10.06 . .\n", ""), "t.cif")
    assert list(p.two_theta) == pytest.approx([10.0, 10.02, 10.04])
    # σ: 1/√0.01 = 10 from the weight; 21 from the su; zero weight and zero counts -> √max(I,1) = 1
    assert list(p.sigma) == pytest.approx([10.0, 21.0, 1.0])
    assert p.radiation is not None and p.radiation.weights == (1.0, 0.5)
    with pytest.raises(PatternFormatError, match="CIF syntax"):
        read_pdcif("data_x\nloop_\n_a\n'unterminated\n", "bad.cif")
    with pytest.raises(PatternFormatError, match="no powder data loop"):
        read_pdcif("data_x\n_cell_length_a 5\n", "cell.cif")


def test_gsas_fxy_without_sigma() -> None:
    text = "t\nBANK 1 3 3 CONST 1000 10 0 0 FXY\n 1000 100\n 1010 400\n 1020 0\n"
    p = read_gsas(text, "f.gsa")
    assert list(p.two_theta) == pytest.approx([10.0, 10.1, 10.2])
    assert p.sigma_source is SigmaSource.COUNTING and p.sigma[1] == pytest.approx(20.0)


def test_gsas_zero_weight_points_left_out() -> None:
    """GSAS gives zero weight to zero counts (STD) and to esds ≤ 0 (ESD); they are not observations."""
    std = "t\nBANK 1 4 1 CONST 1000 10 0 0 STD\n     100     400       0     900\n"
    p = read_gsas(std, "s.gsa")
    assert list(p.two_theta) == pytest.approx([10.0, 10.1, 10.3])
    assert list(p.intensity) == [100.0, 400.0, 900.0] and p.meta["zero_weight_points_left_out"] == 1
    esd = "t\nBANK 1 3 1 CONST 1000 10 0 0 ESD\n   100.0    10.0   400.0     0.0   900.0    30.0\n"
    q = read_gsas(esd, "e.gsa")
    assert list(q.intensity) == [100.0, 900.0] and list(q.sigma) == pytest.approx([10.0, 30.0])


def test_instprm_errors_and_multibank() -> None:
    base = "#GSAS-II instrument parameter file\nType:PNC\nBank:1\nLam:1.5\nZero:0.01\nU:1\nV:2\nW:3\n"
    ip = parse_instprm(base + "Bank:2\nLam:2.0\n", "two.instprm")
    assert ip.radiation.wavelengths == (1.5,) and ip.probe is Probe.NEUTRON and ip.zero == 0.01
    with pytest.raises(PatternFormatError, match="line 4"):
        parse_instprm(base.replace("Lam:1.5", "Lam:abc"), "x.instprm")
    with pytest.raises(PatternFormatError, match="PXC or PNC"):
        parse_instprm(base.replace("Type:PNC", "Type:PNT"), "tof.instprm")
    with pytest.raises(PatternFormatError, match="no wavelength"):
        parse_instprm("Type:PXC\nU:1\n", "x.instprm")


def test_gsas_prm_fixed_columns() -> None:
    # fields are 10 characters from column 13: λ1, λ2, zero, (unused), POLA, IPOLA (5), KRATIO
    text = (
        "INS   BANK      1\n"
        "INS   HTYPE   PXCR\n"
        "INS  1 ICONS  1.540500  1.544300       5.0                 0.8    0       0.5\n"
        "INS  1PRCF1     3    8      0.01\n"
        "INS  1PRCF11   1.0E+00  -2.0E+00   3.0E+00   0.0E+00\n"
        "INS  1PRCF12   4.0E+00   5.0E+00   1.0E-02   2.0E-02\n"
    )
    ip = parse_gsas_prm(text, "x.prm")
    assert ip.radiation.wavelengths == (1.5405, 1.5443) and ip.kalpha2_ratio == 0.5
    assert ip.zero == pytest.approx(0.05) and ip.polarization == pytest.approx(0.8)
    assert (ip.U, ip.V, ip.W, ip.X, ip.Y) == (1.0, -2.0, 3.0, 4.0, 5.0)
    assert ip.SH_L == pytest.approx(0.03)
    with pytest.raises(PatternFormatError, match="HTYPE"):
        parse_gsas_prm(text.replace("PXCR", "PNTR"), "tof.prm")


def test_columns_high_precision_preserved() -> None:
    from xrdsolve.conditioning.readers.columns import read_columns

    x = np.array([10.123456789012345, 10.2])
    p = read_columns(f"{float(x[0])!r} 1\n{float(x[1])!r} 2\n", "p.xy")
    assert np.array_equal(p.two_theta, x)


def _raw_v4(start: float, step: float, y: list[float]) -> bytes:
    """RAW4.00 per GSAS-II's reader: segments from byte 61; type 30 = source (λs at +72, anode at +116);
    type 0 = scan header (start/step/nsteps at +72/+80/+88 from the segment start, datum and extra
    header sizes at +136/+140, data after 160 + extra header bytes)."""
    out = bytearray(b"RAW4.00".ljust(61, b"\0"))
    src = bytearray(120)
    struct.pack_into("<II", src, 0, 30, 120)
    struct.pack_into("<ddddd", src, 72, 1.5418, 1.5406, 1.5444, 1.3922, 0.5)
    src[116:118] = b"Cu"
    scan = bytearray(160)
    struct.pack_into("<I", scan, 0, 0)
    scan[32:46] = b"Locked Coupled"
    struct.pack_into("<ddI", scan, 72, start, step, len(y))
    struct.pack_into("<II", scan, 136, 4, 0)
    return bytes(out + src + scan) + struct.pack(f"<{len(y)}f", *y)


def test_bruker_v4_layout() -> None:
    p = read_bruker_raw(_raw_v4(5.0, 0.01, [3, 4, 5]), "v4.raw")
    assert p.meta["format"] == "bruker-raw-v4"
    assert list(p.two_theta) == pytest.approx([5.0, 5.01, 5.02]) and list(p.intensity) == [3, 4, 5]
    assert p.radiation is not None and p.radiation.wavelengths == pytest.approx((1.5406, 1.5444))
    assert p.radiation.name == "CuKa"
