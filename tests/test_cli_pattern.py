"""The pattern CLI commands, in-process through xrdsolve.cli.main."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_readers_real import CASES

from xrdsolve.cli import main
from xrdsolve.conditioning import Pattern, read_pattern, write_pattern
from xrdsolve.conditioning.peaks import find_peaks


@pytest.mark.parametrize(("rel", "n"), [(c[0], c[2]) for c in CASES], ids=[c[0].split("/")[1] for c in CASES])
def test_info_on_every_real_pattern(
    real_data: Path, rel: str, n: int, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--wavelength", "0.1"] if rel.endswith(".chi") else []
    assert main(["info", str(real_data / rel), "--peaks", "5", *extra]) == 0
    out = capsys.readouterr().out
    assert f"points        {n}" in out


def test_info_chi_without_wavelength_exits_2(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(real_data / "ceo2_synchrotron_qspace/CeO2_mean_q.chi")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wavelength" in err[0]


def test_bad_input_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.xy"
    bad.write_text("10 1\n10.1 nan\n")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.xy, line 2" in err[0]
    assert main(["info", str(tmp_path)]) == 2
    assert main(["info", str(tmp_path / "missing.xy")]) == 2


def test_convert_and_plot(real_data: Path, tmp_path: Path) -> None:
    src = real_data / "lab6_srm660c_lab/NIST660CBI.gsas"
    out = tmp_path / "lab6.xye"
    assert main(["convert", str(src), "-o", str(out), "--radiation", "CuKa"]) == 0
    a, b = read_pattern(src, radiation="CuKa"), read_pattern(out)
    assert np.array_equal(a.two_theta, b.two_theta) and np.array_equal(a.sigma, b.sigma)
    assert b.radiation is not None and b.radiation.name == "CuKa"
    for ext in ("png", "svg", "pdf"):
        fig = tmp_path / f"lab6.{ext}"
        assert main(["plot", str(src), "-o", str(fig), "--peaks", "--dpi", "80"]) == 0
        assert fig.stat().st_size > 1000
    assert main(["plot", str(src), "-o", str(tmp_path / "x.bmp")]) == 2


def test_find_peaks_on_synthetic_pattern() -> None:
    tt = np.arange(10, 60, 0.01)
    centres, fwhms, heights = [20.0, 31.5, 45.25], [0.1, 0.15, 0.2], [1000.0, 500.0, 2000.0]
    y = 50 + sum(
        h * np.exp(-4 * np.log(2) * (tt - c) ** 2 / w**2)
        for c, w, h in zip(centres, fwhms, heights, strict=True)
    )
    p = Pattern.from_arrays(tt, y, radiation="CuKa1")
    pk = find_peaks(p)
    assert len(pk) == 3
    np.testing.assert_allclose(pk.two_theta, centres, atol=0.005)
    np.testing.assert_allclose(pk.fwhm, fwhms, rtol=0.1)
    np.testing.assert_allclose(pk.height, heights, rtol=0.05)
    expected_d = 1.540593 / (2 * np.sin(np.radians(np.array(centres) / 2)))
    np.testing.assert_allclose(pk.d, expected_d, rtol=1e-4)


def test_roundtrip_through_cli_csv(tmp_path: Path) -> None:
    p = Pattern.from_arrays([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.5, 0.25, 0.125], radiation="MoKa")
    src = write_pattern(p, tmp_path / "a.xye")
    assert main(["convert", str(src), "-o", str(tmp_path / "a.csv")]) == 0
    q = read_pattern(tmp_path / "a.csv")
    assert np.array_equal(q.sigma, p.sigma) and q.radiation == p.radiation
