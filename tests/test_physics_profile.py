"""Profile, corrections and background: TCH widths, unit area, asymmetry, shifts, LP, PO, Chebyshev."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.physics import (
    CrystalBatch,
    Instrument,
    ProfileParams,
    chebyshev_background,
    lorentz_polarisation,
    simulate,
    tch_widths,
)
from xrdsolve.refine.physics.profile import fcj_offsets, render_peaks
from xrdsolve.refine.radiation import Geometry, Radiation


def _one_peak(**kw: float) -> tuple[torch.Tensor, torch.Tensor]:
    grid = torch.arange(20.0, 40.0, 0.001, dtype=torch.float64)
    fwhm = torch.tensor([kw.get("fwhm", 0.1)], dtype=torch.float64)
    eta = torch.tensor([kw.get("eta", 0.5)], dtype=torch.float64)
    y = render_peaks(
        grid,
        torch.tensor([0]),
        torch.tensor([30.0], dtype=torch.float64),
        torch.tensor([7.0], dtype=torch.float64),
        fwhm,
        eta,
        1,
        window_fwhm=kw.get("window", 2000.0),
    )
    return grid, y[0]


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_peak_area_and_fwhm(eta: float) -> None:
    grid, y = _one_peak(eta=eta)
    area = torch.trapezoid(y, grid).item()
    tail = (
        0.0 if eta == 0 else eta * 7.0 * (1 - 2 / math.pi * math.atan(2 * 10 / 0.1))
    )  # Lorentzian beyond ±10°
    assert area == pytest.approx(7.0 - tail, rel=1e-4)
    half = (y >= y.max() / 2).nonzero()
    width = (grid[half[-1]] - grid[half[0]]).item()
    assert width == pytest.approx(0.1, abs=0.0021)


def test_tch_limits_and_gsas_units() -> None:
    theta = torch.tensor([math.radians(20.0)], dtype=torch.float64)
    z = torch.zeros(1, dtype=torch.float64)
    # pure Gaussian: FWHM = sqrt(8 ln2 W) centideg
    f, e = tch_widths(theta, z, z, torch.tensor([5.0], dtype=torch.float64), z, z)
    assert f.item() == pytest.approx(math.sqrt(8 * math.log(2) * 5.0) / 100, rel=1e-4)
    assert e.item() == pytest.approx(0.0, abs=1e-5)
    # nearly pure Lorentzian: FWHM = X / cosθ
    f, e = tch_widths(
        theta, z, z, torch.tensor([1e-4], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64), z
    )
    assert f.item() == pytest.approx(10.0 / math.cos(theta.item()) / 100, rel=2e-3)
    assert e.item() == pytest.approx(1.0, abs=2e-3)


def test_window_truncation_small() -> None:
    _, y_full = _one_peak(eta=0.5, window=2000.0)
    _, y_cut = _one_peak(eta=0.5, window=20.0)
    assert float((y_full - y_cut).abs().max() / y_full.max()) < 0.01


def test_fcj_asymmetry_conserves_area_and_tails_low_angle() -> None:
    tt = torch.tensor([20.0, 150.0], dtype=torch.float64)
    off, w = fcj_offsets(tt, torch.tensor([0.02, 0.02], dtype=torch.float64))
    assert torch.allclose(w.sum(-1), torch.ones(2, dtype=torch.float64))
    assert bool((off[0] <= 0).all()) and bool((off[1] >= 0).all())
    # FCJ lower limit: cos 2φ_min = cos 2θ √(((S + H)/L)² + 1), asym = (S + H)/L (GSAS-II's SH/L)
    lim = math.degrees(math.acos(math.cos(math.radians(20.0)) * math.sqrt(0.02**2 + 1)))
    assert float(off[0].min()) >= lim - 20.0 - 1e-9
    assert float(off[0].min()) < 0.8 * (lim - 20.0)
    off0, _ = fcj_offsets(tt, torch.zeros(2, dtype=torch.float64))
    assert bool((off0 == 0).all())


def _cubic_pattern(profile: ProfileParams, instrument: Instrument, grid: torch.Tensor) -> torch.Tensor:
    s = Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]])
    out = simulate(CrystalBatch.from_structures([s]), grid, instrument, profile)
    assert isinstance(out, torch.Tensor)
    return out[0]


def _peak_near(grid: torch.Tensor, y: torch.Tensor, tt: float) -> float:
    sel = (grid > tt - 0.5) & (grid < tt + 0.5)
    g, v = grid[sel], y[sel]
    return float((g * v).sum() / v.sum())


def test_zero_and_displacement_shifts() -> None:
    grid = torch.arange(20.0, 60.0, 0.002, dtype=torch.float64)
    inst = Instrument(Radiation.monochromatic(1.540593))
    d = 4.0
    tt = 2 * math.degrees(math.asin(1.540593 / (2 * d)))
    y0 = _cubic_pattern(ProfileParams.default(1), inst, grid)
    y1 = _cubic_pattern(ProfileParams.default(1, zero=0.05), inst, grid)
    assert _peak_near(grid, y1, tt) - _peak_near(grid, y0, tt) == pytest.approx(0.05, abs=2e-4)
    # Bragg–Brentano: Δ2θ = −2 s cosθ / R (rad); s = 100 μm, R = 240 mm
    y2 = _cubic_pattern(ProfileParams.default(1, displacement=100.0), inst, grid)
    expected = -math.degrees(2 * 0.1 * math.cos(math.radians(tt / 2)) / 240.0)
    assert _peak_near(grid, y2, tt) - _peak_near(grid, y0, tt) == pytest.approx(expected, abs=2e-4)


def test_lorentz_polarisation_gsas_convention() -> None:
    tt = torch.deg2rad(torch.tensor([30.0, 90.0, 120.0], dtype=torch.float64))
    th = tt / 2
    lor = 1 / (torch.sin(th) ** 2 * torch.cos(th))
    lp = lorentz_polarisation(tt, 0.7)
    assert torch.allclose(lp, lor * ((1 - 0.7) * torch.cos(tt) ** 2 + 0.7))  # GSAS-II Polarization(), Azm 0
    lp_m = lorentz_polarisation(tt, 0.5, monochromator_two_theta=26.6)
    c2m = math.cos(math.radians(26.6)) ** 2
    assert torch.allclose(lp_m, lor * 0.5 * (1 + c2m * torch.cos(tt) ** 2))
    assert torch.allclose(lorentz_polarisation(tt, 0.5, neutron=True), lor)


def test_march_dollase_enhances_axis_reflections() -> None:
    s = Structure(Lattice.tetragonal(3.0, 7.0), ["Cu"], [[0, 0, 0]])
    batch = CrystalBatch.from_structures([s])
    inst = Instrument(Radiation.monochromatic(1.540593), po_axis=(0, 0, 1))
    grid = torch.arange(10.0, 70.0, 0.01, dtype=torch.float64)
    y1 = simulate(batch, grid, inst, ProfileParams.default(1))
    y2 = simulate(batch, grid, inst, ProfileParams.default(1, po_ratio=0.7))
    assert isinstance(y1, torch.Tensor) and isinstance(y2, torch.Tensor)
    tt001 = 2 * math.degrees(math.asin(1.540593 / 14.0))
    tt100 = 2 * math.degrees(math.asin(1.540593 / 6.0))
    i = int(torch.argmin((grid - tt001).abs()))
    j = int(torch.argmin((grid - tt100).abs()))
    assert float(y2[0, i] / y1[0, i]) == pytest.approx(0.7**-3, rel=1e-6)  # α = 0: r^-3
    assert float(y2[0, j] / y1[0, j]) == pytest.approx(0.7**1.5, rel=1e-6)  # α = 90°: r^(3/2)


def test_chebyshev_background_and_geometry() -> None:
    grid = torch.linspace(10.0, 90.0, 101, dtype=torch.float64)
    bg = chebyshev_background(grid, torch.tensor([[2.0, 0.0, 1.0]], dtype=torch.float64))
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(bg[0].numpy(), 2.0 + (2 * x * x - 1), atol=1e-12)
    inst = Instrument(Radiation.monochromatic(0.5), geometry=Geometry.DEBYE_SCHERRER, polarisation=0.99)
    y = _cubic_pattern(
        ProfileParams.default(1, background=[5.0]), inst, torch.arange(5.0, 30.0, 0.01, dtype=torch.float64)
    )
    assert float(y.min()) == pytest.approx(5.0, abs=1e-6)


def test_gsas2_fcj_rule_nodes_and_limits() -> None:
    """GSAS-II's FCJ rule (PSVFCJO): an asymmetry span small against the Lorentzian width gets GSAS-II's
    2-point rule, i.e. one node at x = 1/√3 of [2φ_min, 2θ]; a wide span gets many nodes and approaches the
    converged integral; no asymmetry gives one node at the peak."""
    from xrdsolve.refine.physics.profile import fcj_subpeaks, fcj_subpeaks_gsas2

    f64 = torch.float64
    tt = torch.tensor([30.0, 10.0, 40.0], dtype=f64)
    asym = torch.tensor([0.02, 0.05, 0.0], dtype=f64)
    gamma = torch.tensor([5.0, 0.3, 5.0], dtype=f64)  # centidegrees
    parent, off, w = fcj_subpeaks_gsas2(tt, asym, gamma)
    counts = torch.bincount(parent, minlength=3).tolist()
    span = 30.0 - math.degrees(math.acos(math.cos(math.radians(30.0)) * math.sqrt(1 + 0.02**2)))
    assert int(300 * span / 5.0) <= 2 and counts[0] == 1  # K ≤ 2 → NGT = 2 → one positive node
    assert float(off[parent == 0][0]) == pytest.approx(-span * (1 - 1 / math.sqrt(3)), rel=1e-9)
    assert counts[1] > 50 and counts[2] == 1 and float(off[parent == 2][0]) == 0.0
    assert torch.allclose(torch.zeros(3, dtype=f64).index_add(0, parent, w), torch.ones(3, dtype=f64))
    # the wide span: centroid of the node distribution within 2 % of the span of the converged rule's
    fwhm = torch.full((3,), 0.05, dtype=f64)
    p2, o2, w2 = fcj_subpeaks(tt, asym, fwhm)
    span10 = 10.0 - math.degrees(math.acos(math.cos(math.radians(10.0)) * math.sqrt(1 + 0.05**2)))
    mean_g2 = float((off * w)[parent == 1].sum())
    mean_conv = float((o2 * w2)[p2 == 1].sum())
    assert abs(mean_g2 - mean_conv) < 0.02 * span10
    # and at 30° the single node sits measurably off the converged centroid (GSAS-II's under-resolution)
    assert abs(float(off[parent == 0][0]) - float((o2 * w2)[p2 == 0].sum())) > 0.1 * span
    with pytest.raises(Exception, match="fcj_quadrature"):
        Instrument(Radiation.preset("CuKa"), fcj_quadrature="trapezoid")


def test_simulate_with_gsas2_fcj_rule_shifts_low_angle_peaks_only() -> None:
    """The "gsas2" rule is used by ``simulate``: with SH/L 0.02 and a broad Lorentzian a low-angle peak's
    centroid moves by a few thousandths of a degree against the converged rule, a peak near 90° hardly."""
    grid = torch.arange(20.0, 100.0, 0.002, dtype=torch.float64)
    prof = ProfileParams.default(1, dtype=torch.float64, asym=0.02, X=5.0)
    conv = _cubic_pattern(prof, Instrument(Radiation.monochromatic(1.5406)), grid)
    g2 = _cubic_pattern(prof, Instrument(Radiation.monochromatic(1.5406), fcj_quadrature="gsas2"), grid)
    at_111, at_320 = (2 * math.degrees(math.asin(1.5406 * math.sqrt(n) / 8.0)) for n in (3, 13))  # a = 4 Å
    low = abs(_peak_near(grid, g2, at_111) - _peak_near(grid, conv, at_111))
    high = abs(_peak_near(grid, g2, at_320) - _peak_near(grid, conv, at_320))
    assert 5e-4 < low and high < 0.2 * low
