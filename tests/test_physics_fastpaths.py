"""The forward model's fast paths against straightforward reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Species, Structure

from xrdsolve.refine.physics import CrystalBatch, generate_hkl, species_index, tch_widths
from xrdsolve.refine.physics.forward import _by_wavelength, merge_coincident
from xrdsolve.refine.physics.structure_factor import structure_factor_flat


def _cells() -> list[Structure]:
    return [
        Structure(Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
        Structure(Lattice.hexagonal(3.2, 5.1), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]),
        Structure(
            Lattice.from_parameters(5.1, 6.3, 7.2, 81.0, 95.0, 102.0),
            ["Ti", "O", "O", "Ba"],
            [[0.1, 0.2, 0.3], [0.4, 0.1, 0.8], [0.7, 0.6, 0.2], [0.3, 0.9, 0.55]],
        ),
    ]


def test_from_structures_matches_per_site_reading() -> None:
    disordered = Structure(
        Lattice.cubic(4.0),
        [{"Fe": 0.5, "Mn": 0.5}, "O2-", {"Fe3+": 0.3}],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.1, 0.2, 0.3]],
        site_properties={"B_iso": [0.5, None, 1.0]},
    )
    ions = Structure(
        Lattice.cubic(4.2),
        [Species("Fe", 3), Species("O", -2)],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
        site_properties={"U_iso": [0.01, 0.02]},
    )
    structs = [*_cells(), disordered, ions]
    batch = CrystalBatch.from_structures(structs)
    for i, s in enumerate(structs):
        rows = []
        for site in s:
            props = site.properties
            b = props.get("b_iso") or props.get("B_iso")
            if b is None:
                b = props["U_iso"] * 8 * math.pi**2 if props.get("U_iso") is not None else 0.0
            for sp, occ in site.species.items():
                rows.append((site.frac_coords, species_index(str(sp)), occ, b))
        n = len(rows)
        assert int(batch.mask[i].sum()) == n and bool(batch.mask[i, :n].all())
        np.testing.assert_allclose(batch.lattice[i].numpy(), s.lattice.matrix)
        np.testing.assert_allclose(batch.frac[i, :n].numpy(), np.array([r[0] for r in rows]))
        assert batch.species[i, :n].tolist() == [r[1] for r in rows]
        np.testing.assert_allclose(batch.occ[i, :n].numpy(), [r[2] for r in rows])
        np.testing.assert_allclose(batch.b_iso[i, :n].numpy(), [r[3] for r in rows])


@pytest.mark.parametrize("friedel", [True, False])
def test_generate_hkl_matches_brute_force(friedel: bool) -> None:
    structs = _cells()
    lat = CrystalBatch.from_structures(structs).lattice
    d_min = torch.tensor([0.9, 1.1, 1.3], dtype=torch.float64)
    hkl, mask = generate_hkl(lat, d_min, friedel=friedel)
    for b in range(len(structs)):
        rec = np.linalg.inv(lat[b].numpy()).T
        r = np.arange(-12, 13)
        h = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        if friedel:
            h = h[
                (h[:, 0] > 0)
                | ((h[:, 0] == 0) & (h[:, 1] > 0))
                | ((h[:, 0] == 0) & (h[:, 1] == 0) & (h[:, 2] > 0))
            ]
        g = h @ rec
        g2 = (g * g).sum(1)
        q2 = (1.0 / float(d_min[b])) ** 2
        keep = (g2 > 0) & (g2 <= q2 * (1 + 1e-12))
        ref = h[keep][np.argsort(g2[keep], kind="stable")]
        got = hkl[b][mask[b]].numpy()
        assert got.shape == ref.shape
        assert {tuple(x) for x in got} == {tuple(x) for x in ref}
        gg = got @ rec
        g2_got = (gg * gg).sum(1)
        assert np.all(np.diff(g2_got) >= -1e-12 * g2_got[1:])  # sorted by |g| (up to rounding)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merge_coincident_any_order_matches_unique(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    n = 400
    bidx = torch.randint(0, 5, (n,), generator=gen)
    lidx = torch.randint(0, 2, (n,), generator=gen)
    tt = torch.randint(0, 40, (n,), generator=gen).to(dtype) * 0.5 + 10.0
    inten = torch.rand(n, generator=gen, dtype=dtype)
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    key_tt = torch.round(tt / tol).to(torch.int64)
    span = int(key_tt.max()) + 1
    key = (bidx * 2 + lidx) * span + key_tt
    uniq, inv = torch.unique(key, return_inverse=True)
    area_ref = torch.zeros(uniq.shape[0], dtype=dtype).index_add(0, inv, inten)
    for perm in (torch.arange(n), torch.randperm(n, generator=gen), torch.argsort(key, stable=True)):
        b, _, a = merge_coincident(bidx[perm], lidx[perm], tt[perm], inten[perm])
        assert b.shape[0] == uniq.shape[0]
        torch.testing.assert_close(a, area_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(b, torch.div(uniq, 2 * span, rounding_mode="floor"))


def test_by_wavelength_order() -> None:
    valid = torch.tensor([[True, True], [False, True], [True, False], [True, True]])
    sel = _by_wavelength(valid)
    assert sel.tolist() == [0, 4, 6, 1, 3, 7]  # t·L + l, wavelength-major


def test_tch_widths_formula() -> None:
    theta = torch.linspace(0.05, 1.4, 50, dtype=torch.float64)
    u, v, w, x, y = (torch.tensor(c, dtype=torch.float64) for c in (2.0, -2.0, 5.0, 2.0, 3.0))
    fwhm, eta = tch_widths(theta, u, v, w, x, y)
    tan = torch.tan(theta)
    fg = torch.sqrt(8 * math.log(2) * (u * tan**2 + v * tan + w))
    fl = x / torch.cos(theta) + y * tan
    f = (
        fg**5
        + 2.69269 * fg**4 * fl
        + 2.42843 * fg**3 * fl**2
        + 4.47163 * fg**2 * fl**3
        + 0.07842 * fg * fl**4
    ) + fl**5
    f = f**0.2
    q = fl / f
    torch.testing.assert_close(fwhm, f / 100.0, rtol=1e-13, atol=0)
    torch.testing.assert_close(eta, 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3, rtol=1e-13, atol=1e-15)


def test_structure_factor_matches_direct_sum() -> None:
    structs = _cells()
    batch = CrystalBatch.from_structures(structs)
    batch.b_iso = torch.full_like(batch.b_iso, 0.7)
    hkl, mask = generate_hkl(batch.lattice, 1.0, friedel=False)
    flat = torch.nonzero(mask.reshape(-1)).squeeze(1)
    ci = torch.div(flat, mask.shape[1], rounding_mode="floor")
    h = hkl.reshape(-1, 3)[flat]
    rec = torch.linalg.inv(batch.lattice).transpose(1, 2)
    g = torch.einsum("tc,tcd->td", h.double(), rec[ci])
    s2 = 0.25 * (g * g).sum(-1)
    for wl in (None, 1.540593):
        re, im = structure_factor_flat(batch, h, ci, s2, wavelength=wl)
        # direct complex sum with xraydb form factors and anomalous terms, one structure at a time
        from xrdsolve.refine.physics.scattering import anomalous_terms, form_factor

        for b in range(len(structs)):
            sel = ci == b
            n = int(batch.mask[b].sum())
            f0 = form_factor(batch.species[b : b + 1, :n], s2[sel][None])[0]  # (R,n)
            if wl is not None:
                fp, fpp = anomalous_terms(batch.species[b, :n], wl, torch.float64)
                f = f0 + fp + 1j * fpp
            else:
                f = f0.to(torch.complex128)
            dw = torch.exp(-0.7 * s2[sel])[:, None]
            ph = 2j * math.pi * (h[sel].double() @ batch.frac[b, :n].T)
            fc = (f * dw * torch.exp(ph)).sum(1)
            torch.testing.assert_close(re[sel], fc.real, rtol=1e-10, atol=1e-9)
            torch.testing.assert_close(im[sel], fc.imag, rtol=1e-10, atol=1e-9)


def test_first_use_from_several_threads_in_a_fresh_process() -> None:
    """The scattering table is built once under a lock: four threads reading structures at once in a fresh
    interpreter (the first use) all succeed (periodictable's lazy neutron tables raced before)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        from concurrent.futures import ThreadPoolExecutor
        from pymatgen.core import Lattice, Structure
        from xrdsolve.refine.physics import CrystalBatch
        s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        with ThreadPoolExecutor(4) as ex:
            out = list(ex.map(lambda _: CrystalBatch.from_structures([s]).frac.shape[1], range(4)))
        print(out)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[2, 2, 2, 2]"


def test_simulate_structures_on_worker_threads_equals_one_call() -> None:
    """Chunks on two worker threads give exactly the patterns of one batched simulate call, in input order,
    and torch's thread count is restored."""
    import torch
    from pymatgen.core import Lattice, Structure

    from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, simulate, simulate_structures
    from xrdsolve.refine.radiation import Radiation

    structures = [
        Structure(Lattice.cubic(3.8 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for i in range(5)
    ] + [
        Structure(Lattice.tetragonal(4.6, 2.96), ["Ti", "O", "O"], [[0, 0, 0], [0.3, 0.3, 0], [0.7, 0.7, 0]])
    ]
    grid = torch.arange(10.0, 80.0, 0.02, dtype=torch.float64)
    inst = Instrument(Radiation.preset("CuKa"))
    profile = {"X": 2.0, "background": [5.0, 1.0]}
    threads = torch.get_num_threads()
    many = simulate_structures(structures, grid, inst, profile, chunk=2, workers=2, dtype=torch.float64)
    assert torch.get_num_threads() == threads
    prof = ProfileParams.default(len(structures), dtype=torch.float64, **profile)
    with torch.no_grad():
        ref = simulate(CrystalBatch.from_structures(structures, dtype=torch.float64), grid, inst, prof)
    assert many.shape == (6, grid.shape[0])
    assert torch.allclose(many, ref, rtol=1e-12, atol=1e-9)
    assert not torch.allclose(many[0], many[1])  # the order of the structures is kept
