"""Augmented simulation: counts, peak positions on the Q grid, radiation independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.conditioning.augment import AugmentConfig, augment_batch
from xrdsolve.conditioning.preprocess import QGrid, encode_arrays
from xrdsolve.generate.trainset import physics_species


def _nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _tensors(s: Structure, b: int) -> tuple[torch.Tensor, ...]:
    lat = torch.tensor(s.lattice.matrix, dtype=torch.float32)[None].expand(b, -1, -1)
    frac = torch.tensor(s.frac_coords, dtype=torch.float32)[None].expand(b, -1, -1)
    z = np.array([[site.specie.Z for site in s]] * b)
    sp = torch.as_tensor(physics_species(z))
    return lat, frac, sp, torch.ones(b, len(s), dtype=torch.bool)


def test_augmented_pattern_has_counts_and_strongest_peak_at_200() -> None:
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(p_cu=1.0, cu_range=(5.0, 90.0), p_hump=0.0, p_impurity=0.0, p_po=0.0, strain=0.0)
    sim = augment_batch(*_tensors(_nacl(), 4), rng, cfg)
    assert sim.intensity.shape == (4, cfg.points)
    assert (sim.intensity >= 0).all() and np.allclose(sim.intensity, np.round(sim.intensity))
    assert sim.two_theta[0] == 5.0 and sim.two_theta[-1] == 90.0
    grid = QGrid()
    q200 = 2 * np.pi / (5.64 / 2)
    for row in sim.intensity:
        enc = encode_arrays(sim.q(), row, grid)
        # Kα2 and zero/displacement shifts move the maximum by a little only
        assert abs(grid.q[np.argmax(enc[0])] - q200) < 0.05


def test_other_radiations_cover_the_q_grid() -> None:
    rng = np.random.default_rng(3)
    cfg = AugmentConfig(p_cu=0.0, p_mo=0.0, p_cu1=0.0)  # synchrotron only
    sim = augment_batch(*_tensors(_nacl(), 2), rng, cfg)
    q = sim.q()
    assert q[0] < 0.35 and q[-1] > 5.9
    assert len(sim.radiation.wavelengths) == 1 and 0.4 <= sim.radiation.wavelengths[0] <= 1.0


def test_strain_keeps_the_point_group_when_rotations_are_given() -> None:
    """Averaged over the cubic point group a random strain is isotropic (the cell stays cubic); over a
    tetragonal one it keeps a = b and the right angles; without rotations it is left as drawn."""
    from xrdsolve.conditioning.augment import symmetric_strain
    from xrdsolve.generate.bench import point_group_rotations

    rng = np.random.default_rng(3)
    eps = rng.normal(0, 0.004, (3, 3))
    eps = 0.5 * (eps + eps.T)
    cubic = symmetric_strain(eps, point_group_rotations(_nacl()))
    np.testing.assert_allclose(cubic, np.eye(3) * np.trace(eps) / 3, atol=1e-12)
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.3, 0.3, 0]]
    )
    strained = Lattice(
        rutile.lattice.matrix @ (np.eye(3) + symmetric_strain(eps, point_group_rotations(rutile)))
    )
    assert strained.a == pytest.approx(strained.b, rel=1e-12)
    np.testing.assert_allclose(strained.angles, 90.0, atol=1e-9)
    assert abs(strained.c / strained.a - rutile.lattice.c / rutile.lattice.a) > 1e-5  # c/a may change
    assert np.array_equal(symmetric_strain(eps, None), eps)
