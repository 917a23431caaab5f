"""Gradients of the forward model against finite differences (torch.autograd.gradcheck, float64)."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, generate_hkl, simulate
from xrdsolve.refine.radiation import Radiation

GRID = torch.arange(15.0, 45.0, 0.1, dtype=torch.float64)
INST = Instrument(Radiation.preset("CuKa"), window_fwhm=60.0)


def _batch() -> CrystalBatch:
    s1 = Structure(
        Lattice.from_parameters(4.1, 4.6, 5.2, 85.0, 95.0, 100.0),
        ["Fe", "O", "O"],
        [[0.1, 0.2, 0.3], [0.6, 0.4, 0.1], [0.3, 0.8, 0.7]],
    )
    s2 = Structure(Lattice.cubic(4.0), ["Sr", "Ti"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    b = CrystalBatch.from_structures([s1, s2])
    b.b_iso = torch.full_like(b.b_iso, 0.5)
    b.occ = b.occ * 0.9
    return b


def _profile(n: int) -> ProfileParams:
    return ProfileParams.default(
        n,
        U=20.0,
        V=-5.0,
        W=30.0,
        X=3.0,
        Y=4.0,
        asym=0.01,
        zero=0.01,
        displacement=20.0,
        po_ratio=0.9,
        background=[1.0, 0.5, 0.2],
    )


@pytest.mark.slow
def test_gradcheck_crystal_tensors() -> None:
    base = _batch()
    hkl = generate_hkl(base.lattice, 1.0)
    prof = _profile(2)

    def f(lattice: torch.Tensor, frac: torch.Tensor, occ: torch.Tensor, b_iso: torch.Tensor) -> torch.Tensor:
        b = CrystalBatch(lattice, frac, base.species, occ, b_iso, base.mask)
        out = simulate(b, GRID, INST, prof, hkl)
        assert isinstance(out, torch.Tensor)
        return out / 1e4

    inputs = tuple(t.clone().requires_grad_(True) for t in (base.lattice, base.frac, base.occ, base.b_iso))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.slow
def test_gradcheck_profile_tensors() -> None:
    base = _batch()
    hkl = generate_hkl(base.lattice, 1.0)
    names = ["scale", "zero", "displacement", "U", "V", "W", "X", "Y", "asym", "background", "po_ratio"]
    prof = _profile(2)

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        p = ProfileParams(**dict(zip(names, tensors, strict=True)))
        out = simulate(base, GRID, INST, p, hkl)
        assert isinstance(out, torch.Tensor)
        return out / 1e4

    inputs = tuple(getattr(prof, n).clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_float32_follows_inputs() -> None:
    b = _batch().to(torch.float32)
    out = simulate(b, GRID.float(), INST, _profile(2))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    ref = simulate(_batch(), GRID, INST, _profile(2))
    assert isinstance(ref, torch.Tensor)
    assert (
        float((out.double() - ref).abs().max() / ref.max()) < 2e-3
    )  # float32 positions (~5e-6°) on steep peak flanks


def test_gradcheck_small_fast() -> None:
    """A quick subset (one crystal, short grid) for the default suite; the full checks above are slow."""
    s = Structure(
        Lattice.from_parameters(4.1, 4.6, 5.2, 85.0, 95.0, 100.0),
        ["Fe", "O"],
        [[0.1, 0.2, 0.3], [0.6, 0.4, 0.1]],
    )
    base = CrystalBatch.from_structures([s])
    grid = torch.arange(25.0, 35.0, 0.1, dtype=torch.float64)
    hkl = generate_hkl(base.lattice, 1.3)
    prof0 = _profile(1)

    def f(lattice: torch.Tensor, frac: torch.Tensor, w: torch.Tensor, asym: torch.Tensor) -> torch.Tensor:
        b = CrystalBatch(lattice, frac, base.species, base.occ, base.b_iso, base.mask)
        p = ProfileParams(**{**prof0.tensors(), "W": w, "asym": asym})
        out = simulate(b, grid, INST, p, hkl)
        assert isinstance(out, torch.Tensor)
        return out / 1e4

    inputs = tuple(t.clone().requires_grad_(True) for t in (base.lattice, base.frac, prof0.W, prof0.asym))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
