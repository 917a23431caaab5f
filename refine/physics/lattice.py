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


def _hkl_batch(lattices: np.ndarray, d_min: np.ndarray, friedel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Reflections of B cells in one vectorised pass: (hkl (B,R,3) int64, mask (B,R)), sorted by |g|.

    The (h, k) columns of the box |h| ≤ |a|/d_min, |k| ≤ |b|/d_min are enumerated; for each column the l range
    inside the sphere |h a* + k b* + l c*| ≤ 1/d_min solves a quadratic, so only points in (or at the edge of)
    the sphere are generated. With ``friedel`` only h > 0, or h = 0 and k > 0, or h = k = 0 and l > 0 is kept.
    """
    bsz = lattices.shape[0]
    rec = np.linalg.inv(lattices).transpose(0, 2, 1)  # (B,3,3) rows a*, b*, c*
    q2 = (1.0 / d_min) ** 2 * (1 + 1e-12)
    lengths = np.linalg.norm(lattices, axis=2)  # (B,3)
    hmax = np.floor(lengths / d_min[:, None] + 1e-9).astype(np.int64)
    if np.any(hmax > 400):
        bad = int(np.argmax(hmax.max(1)))
        raise StructureError(
            f"too many reflections: cell edges {lengths[bad]} Å with d_min {d_min[bad]:.3g} Å"
        )
    nh = hmax[:, 0] + 1 if friedel else 2 * hmax[:, 0] + 1
    nk = 2 * hmax[:, 1] + 1
    ncol = nh * nk
    cidx = np.repeat(np.arange(bsz), ncol)  # crystal of each (h, k) column
    local = np.arange(cidx.size) - np.repeat(np.cumsum(ncol) - ncol, ncol)
    h = local // nk[cidx] - (0 if friedel else hmax[cidx, 0])
    k = local % nk[cidx] - hmax[cidx, 1]
    if friedel:
        keep = (h > 0) | (k >= 0)
        cidx, h, k = cidx[keep], h[keep], k[keep]
    r = np.take(rec, cidx, axis=0)
    p = h[:, None] * r[:, 0] + k[:, None] * r[:, 1]  # (C,3) h a* + k b*
    cs = r[:, 2]
    qa = np.einsum("ij,ij->i", cs, cs)
    qb = np.einsum("ij,ij->i", p, cs)
    qc = np.einsum("ij,ij->i", p, p) - q2[cidx]
    disc = np.sqrt(np.clip(qb * qb - qa * qc, 0.0, None))
    lo = np.ceil((-qb - disc) / qa - 1e-6).astype(np.int64)
    hi = np.floor((-qb + disc) / qa + 1e-6).astype(np.int64)
    if friedel:
        lo = np.where((h == 0) & (k == 0), np.maximum(lo, 1), lo)
    cnt = np.clip(hi - lo + 1, 0, None)
    col = np.repeat(np.arange(cnt.size), cnt)
    ll = lo[col] + (np.arange(col.size) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    g = np.take(p, col, axis=0) + ll[:, None] * np.take(cs, col, axis=0)  # (h a* + k b*) + l c*
    g2 = np.einsum("ij,ij->i", g, g)
    ci = cidx[col]
    ok = (g2 > 0) & (g2 <= q2[ci])
    col, ll, g2, ci = col[ok], ll[ok], g2[ok], ci[ok]
    n_per = np.bincount(ci, minlength=bsz)
    rmax = max(1, int(n_per.max()) if n_per.size else 1)
    # by crystal, then |g| (stable: ties keep enumeration order) — a stable sort by |g|, then a stable (radix)
    # sort by crystal; g2 > 0, so its IEEE bit pattern as int64 sorts like its value (and faster)
    by_g = np.argsort(np.ascontiguousarray(g2).view(np.int64), kind="stable")
    ci_small = ci.astype(np.int16) if bsz <= np.iinfo(np.int16).max else ci
    order = by_g[np.argsort(ci_small[by_g], kind="stable")]
    mask = np.arange(rmax)[None, :] < n_per[:, None]
    out = np.zeros((bsz, rmax, 3), dtype=np.int64)
    flat = out.reshape(-1, 3)
    dest = np.arange(order.size) + np.repeat(np.arange(bsz) * rmax - (np.cumsum(n_per) - n_per), n_per)
    co = np.take(col, order)
    flat[dest, 0] = np.take(h, co)
    flat[dest, 1] = np.take(k, co)
    flat[dest, 2] = np.take(ll, order)
    return out, mask


def generate_hkl(lattice: Tensor, d_min: float | Tensor, friedel: bool = True) -> tuple[Tensor, Tensor]:
    """All reflections with d ≥ d_min (Å) for each cell of a batch; not differentiable.

    lattice: (B,3,3) Å. d_min: scalar or (B,) Å. With ``friedel`` (no anomalous scattering) only one
    reflection of each Friedel pair ±h is kept (h > 0, or h = 0 and k > 0, or h = k = 0 and l > 0); the
    forward model counts it twice. Returns ``(hkl (B,R,3) long, mask (B,R) bool)``, sorted by increasing
    1/d (ties in enumeration order), padded with (0,0,0) and mask False.
    """
    lat = lattice.detach().to("cpu", torch.float64).numpy()
    bsz = lat.shape[0]
    dm = torch.as_tensor(d_min, dtype=torch.float64).detach().cpu().numpy()
    dm = np.broadcast_to(dm, (bsz,))
    if np.any(dm <= 0):
        raise StructureError("d_min must be positive")
    hkl, mask = _hkl_batch(lat, np.ascontiguousarray(dm, dtype=np.float64), friedel)
    return torch.from_numpy(hkl).to(lattice.device), torch.from_numpy(mask).to(lattice.device)
