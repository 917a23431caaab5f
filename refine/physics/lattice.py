"""Lattice geometry: reciprocal lattice, d-spacings and the list of reflections (hkl) up to a d_min.

Convention: ``lattice`` rows are the direct vectors a, b, c in Å (pymatgen ``lattice.matrix``); the
crystallographic reciprocal lattice (no 2π) has rows a*, b*, c* = inv(lattice)ᵀ in Å⁻¹, and a reflection h
has reciprocal vector g = h·A* with |g| = 1/d.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..errors import StructureError


def reciprocal_lattice(lattice: Tensor) -> Tensor:
    """Crystallographic reciprocal lattice (B,3,3), rows a*, b*, c* in Å⁻¹ (no 2π)."""
    return torch.linalg.inv(lattice).transpose(-1, -2)


def reciprocal_vectors(hkl: Tensor, lattice: Tensor) -> Tensor:
    """Reciprocal vectors g = h·A* (B,R,3) in Å⁻¹ for integer hkl (B,R,3)."""
    return hkl.to(lattice.dtype) @ reciprocal_lattice(lattice)


def d_spacing(hkl: Tensor, lattice: Tensor) -> Tensor:
    """Interplanar spacings d (B,R) in Å; differentiable w.r.t. the lattice. Zero vectors give inf."""
    g = reciprocal_vectors(hkl, lattice)
    g2 = (g * g).sum(-1)
    return torch.where(g2 > 0, 1.0 / torch.sqrt(torch.where(g2 > 0, g2, 1.0)), torch.inf)


def d_min_for(two_theta_max: float, wavelength: float) -> float:
    """Smallest d (Å) reachable at 2θ_max (degrees) with wavelength λ (Å): d = λ / (2 sin θ_max)."""
    theta = math.radians(min(float(two_theta_max), 179.999) / 2.0)
    return float(wavelength) / (2.0 * math.sin(theta))


def _hkl_one(lattice: np.ndarray, d_min: float, friedel: bool) -> np.ndarray:
    lengths = np.linalg.norm(lattice, axis=1)
    hmax = np.floor(lengths / d_min + 1e-9).astype(int)
    if np.any(hmax > 400):
        raise StructureError(f"too many reflections: cell edges {lengths} Å with d_min {d_min:.3g} Å")
    ranges = [np.arange(-m, m + 1) for m in hmax]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    rec = np.linalg.inv(lattice).T
    g = grid @ rec
    g2 = np.einsum("ij,ij->i", g, g)
    keep = (g2 > 0) & (g2 <= (1.0 / d_min) ** 2 * (1 + 1e-12))
    if friedel:
        h, k, ll = grid.T
        keep &= (h > 0) | ((h == 0) & (k > 0)) | ((h == 0) & (k == 0) & (ll > 0))
    grid, g2 = grid[keep], g2[keep]
    order = np.lexsort((-grid[:, 2], -grid[:, 1], -grid[:, 0], np.round(g2, 12)))
    return grid[order]


def generate_hkl(lattice: Tensor, d_min: float | Tensor, friedel: bool = True) -> tuple[Tensor, Tensor]:
    """All reflections with d ≥ d_min (Å) for each cell of a batch; not differentiable.

    lattice: (B,3,3) Å. d_min: scalar or (B,) Å. With ``friedel`` (no anomalous scattering) only one
    reflection of each Friedel pair ±h is kept (h > 0, or h = 0 and k > 0, or h = k = 0 and l > 0); the
    forward model counts it twice. Returns ``(hkl (B,R,3) long, mask (B,R) bool)``, sorted by increasing
    1/d, padded with (0,0,0) and mask False.
    """
    lat = lattice.detach().to("cpu", torch.float64).numpy()
    bsz = lat.shape[0]
    dm = torch.as_tensor(d_min, dtype=torch.float64).detach().cpu().numpy()
    dm = np.broadcast_to(dm, (bsz,))
    if np.any(dm <= 0):
        raise StructureError("d_min must be positive")
    lists = [_hkl_one(lat[i], float(dm[i]), friedel) for i in range(bsz)]
    rmax = max(1, max(len(x) for x in lists))
    hkl = np.zeros((bsz, rmax, 3), dtype=np.int64)
    mask = np.zeros((bsz, rmax), dtype=bool)
    for i, x in enumerate(lists):
        hkl[i, : len(x)] = x
        mask[i, : len(x)] = True
    return torch.from_numpy(hkl).to(lattice.device), torch.from_numpy(mask).to(lattice.device)
