"""The fast paths of the forward model equal their straightforward definitions (rendering, hkl, FCJ)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrdsolve.refine.physics import generate_hkl, pseudo_voigt
from xrdsolve.refine.physics.profile import fcj_offsets, fcj_subpeaks, render_peaks


def _peaks(n: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    centre = (20.0 + 10.0 * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype)
    area = (1.0 + torch.rand(n, generator=g, dtype=torch.float64)).to(dtype)
    fwhm = (0.05 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype)
    eta = torch.rand(n, generator=g, dtype=torch.float64).to(dtype)
    bidx = torch.randint(0, 2, (n,), generator=g)
    return bidx, centre, area, fwhm, eta


def test_windowed_rendering_equals_dense_sum() -> None:
    grid = torch.arange(15.0, 35.0, 0.01, dtype=torch.float64)
    bidx, centre, area, fwhm, eta = _peaks(40)
    y = render_peaks(grid, bidx, centre, area, fwhm, eta, 2, window_fwhm=1e4)
    dense = area[:, None] * pseudo_voigt(grid[None, :] - centre[:, None], fwhm[:, None], eta[:, None])
    ref = torch.zeros(2, grid.shape[0], dtype=torch.float64).index_add(0, bidx, dense)
    assert (
        float((y - ref).abs().max() / ref.abs().max()) < 1e-10
    )  # x = x0 + jΔ vs grid − centre rounding over 10⁴ FWHM windows
    # default window: the Lorentzian tails beyond ±10 FWHM are cut, nothing else
    y20 = render_peaks(grid, bidx, centre, area, fwhm, eta, 2, window_fwhm=20.0)
    assert 1e-4 < float((y20 - ref).abs().max() / ref.abs().max()) < 1e-2


def test_windowed_rendering_gradients_and_tangents() -> None:
    grid = torch.arange(20.0, 30.0, 0.05, dtype=torch.float64)
    bidx, centre, area, fwhm, eta = _peaks(4)

    def f(c: torch.Tensor, a: torch.Tensor, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return render_peaks(grid, bidx, c, a, w, e, 2, window_fwhm=8.0)

    inputs = tuple(t.clone().requires_grad_(True) for t in (centre, area, fwhm, eta))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6, rtol=1e-4, check_forward_ad=True)


def test_float32_rendering_matches_float64() -> None:
    grid = torch.arange(15.0, 35.0, 0.01, dtype=torch.float64)
    p64 = _peaks(200)
    p32 = tuple(t.float() if t.is_floating_point() else t for t in p64)
    y64 = render_peaks(grid, *p64, 2)
    y32 = render_peaks(grid.float(), *p32, 2)
    assert (
        float((y32.double() - y64).abs().max() / y64.abs().max()) < 1e-4
    )  # float32 centres (~2e-6°) on steep flanks


@pytest.mark.parametrize("friedel", [True, False])
def test_hkl_equals_brute_force(friedel: bool) -> None:
    lats = torch.tensor(
        [
            [[4.1, 0.0, 0.0], [-0.8, 4.5, 0.0], [0.4, 0.9, 5.1]],
            [[3.0, 0.0, 0.0], [0.0, 15.0, 0.0], [-2.5, 0.0, 6.5]],
            [[2.9, 0.0, 0.0], [0.0, 2.9, 0.0], [0.0, 0.0, 2.9]],
        ],
        dtype=torch.float64,
    )
    d_min = torch.tensor([0.9, 1.1, 0.6], dtype=torch.float64)
    hkl, mask = generate_hkl(lats, d_min, friedel=friedel)
    for i in range(lats.shape[0]):
        rec = np.linalg.inv(lats[i].numpy()).T
        n = 30
        grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        g2 = ((grid @ rec) ** 2).sum(1)
        keep = (g2 > 0) & (g2 <= (1 / float(d_min[i])) ** 2 * (1 + 1e-12))
        if friedel:
            h, k, l_ = grid.T
            keep &= (h > 0) | ((h == 0) & (k > 0)) | ((h == 0) & (k == 0) & (l_ > 0))
        want = {tuple(r) for r in grid[keep].tolist()}
        got = [tuple(r) for r in hkl[i][mask[i]].tolist()]
        assert len(got) == len(set(got)) and set(got) == want
        d = 1.0 / np.linalg.norm(np.asarray(got, dtype=float) @ rec, axis=1)
        assert np.all(np.diff(d) <= 1e-12)  # sorted by decreasing d
        assert float(d.min()) >= float(d_min[i]) * (1 - 1e-9)


@pytest.mark.parametrize("two_theta", [10.0, 20.0, 40.0, 80.0, 120.0, 160.0])
def test_adaptive_fcj_matches_converged_quadrature(two_theta: float) -> None:
    tt = torch.tensor([two_theta], dtype=torch.float64)
    asym = torch.tensor([0.02], dtype=torch.float64)
    fwhm = torch.tensor([0.08], dtype=torch.float64)
    x = torch.linspace(-2.0, 2.0, 8001, dtype=torch.float64)

    def shape(off: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w[:, None] * pseudo_voigt(x[None, :] - off[:, None], fwhm, torch.tensor(0.5))).sum(0)

    off, w = fcj_offsets(tt, asym, 256)
    ref = shape(off[0], w[0])
    parent, off_a, w_a = fcj_subpeaks(tt, asym, fwhm)
    assert bool((parent == 0).all()) and float(w_a.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float((shape(off_a, w_a) - ref).abs().max() / ref.max()) < 2e-4
    # float32 inputs: the weights are computed in float64 inside (the FCJ weight is singular at 2φ = 2θ)
    _, off32, w32 = fcj_subpeaks(tt.float(), asym.float(), fwhm.float())
    assert float((shape(off32.double(), w32.double()) - ref).abs().max() / ref.max()) < 1e-3


@pytest.mark.slow
def test_compiled_kernels_equal_eager() -> None:
    """Opt-in torch.compile path (cold compile ~15–60 s on 2 cores) gives the eager pattern."""
    from pymatgen.core import Lattice, Structure

    from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, simulate
    from xrdsolve.refine.physics.compile import set_compile

    s = Structure(
        Lattice.orthorhombic(5.1, 6.2, 7.3),
        ["Ba", "O", "S"],
        [[0.1, 0.2, 0.3], [0.4, 0.1, 0.8], [0.7, 0.6, 0.2]],
    )
    cb = CrystalBatch.from_structures([s, s * (1, 1, 2)], dtype=torch.float32)
    grid = torch.arange(5.0, 90.0, 0.01)
    prof = ProfileParams.default(2, dtype=torch.float32, X=2.0, Y=3.0, asym=0.01)
    inst = Instrument.lab("CuKa")
    with torch.no_grad():
        eager = simulate(cb, grid, inst, prof)
        set_compile(True)
        try:
            compiled = simulate(cb, grid, inst, prof)
        finally:
            set_compile(False)
    assert isinstance(eager, torch.Tensor) and isinstance(compiled, torch.Tensor)
    assert float((compiled - eager).abs().max() / eager.abs().max()) < 1e-4  # float32 rounding order
