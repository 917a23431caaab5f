"""Symmetry-equivalent reflections: merge a half-sphere reflection list into one reflection per Laue orbit.

For a crystal with space-group rotations R (fractional basis, x' = R x + t) the structure factor obeys
|F(h R)| = |F(h)| (h a row vector), and the Friedel mean (|F(h)|² + |F(−h)|²)/2 used with anomalous
scattering is invariant under ±R, the Laue group. So is everything else in an integrated intensity that
depends on h only through d (Lorentz–polarisation, Debye–Waller with isotropic B, form factors). A
half-sphere list (one of each Friedel pair, :func:`refine.physics.lattice.generate_hkl`) can therefore be
replaced by one representative per orbit together with the number of listed reflections it stands for,
which the forward model takes as the reflection "mask" (an integer count instead of a bool; multiplicity
= 2 × count). This is what GSAS-II and every Rietveld program do; it cuts the structure-factor work by the
Laue group's order / 2 (8 for tetragonal 4/mmm, 24 for cubic m-3m). Preferred orientation depends on the
direction of h, not only on d: merged lists cannot carry it (the forward model refuses the combination).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def laue_rotations(rotations: np.ndarray) -> np.ndarray:
    """Distinct integer rotations (K,3,3) of a space group's rotations (centring duplicates removed)."""
    rots = np.rint(np.asarray(rotations, dtype=float)).astype(np.int64).reshape(-1, 3, 3)
    return np.unique(rots, axis=0)


def _orbit_keys(hkl: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(R,) integer key of each reflection's orbit under ±rotations: the largest key over its images.

    key(g) = g·w + span·(w₀ + w₁ + w₂) with w = (W², W, 1), W = 2·span + 1, encodes every g with |gᵢ| ≤ span
    one to one; over the images ±h R its largest value is span·Σw + max |h R w|, one (R,3)·(3,K) product."""
    span = int(np.abs(hkl).max(initial=0)) * 3 + 1  # |h R| ≤ 3 max|h| for the integer rotations of a lattice
    width = 2 * span + 1
    weights = np.array([width * width, width, 1], dtype=np.int64)
    projections = np.asarray(rotations, dtype=np.int64) @ weights  # (K,3): R w
    return np.abs(np.asarray(hkl, dtype=np.int64) @ projections.T).max(axis=1) + span * int(weights.sum())


def merge_equivalent_reflections(
    hkl: Tensor, mask: Tensor, rotations: Sequence[np.ndarray]
) -> tuple[Tensor, Tensor]:
    """One representative per Laue orbit of each crystal's reflection list.

    hkl (B,R,3) long and mask (B,R) bool from :func:`generate_hkl` (half sphere, sorted by increasing 1/d);
    ``rotations[b]`` the space-group rotations of crystal b in the fractional basis of its cell (K_b,3,3).
    Returns (hkl (B,R',3), counts (B,R') int64): each representative is the first listed member of its orbit,
    in the input order (so still sorted by 1/d), with the number of listed reflections of its orbit; padding
    has count 0.
    """
    if mask.dtype != torch.bool:
        raise ValueError("merge_equivalent_reflections expects a bool mask (an unmerged list)")
    bsz = hkl.shape[0]
    if len(rotations) != bsz:
        raise ValueError(f"{len(rotations)} rotation sets for {bsz} crystals")
    hkl_np, mask_np = hkl.cpu().numpy(), mask.cpu().numpy()
    reps: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for b in range(bsz):
        rows = np.flatnonzero(mask_np[b])
        keys = _orbit_keys(hkl_np[b, rows], laue_rotations(rotations[b]))
        _, first, n = np.unique(keys, return_index=True, return_counts=True)
        order = np.argsort(first)
        reps.append(hkl_np[b, rows[first[order]]])
        counts.append(n[order])
    width = max(1, max(len(c) for c in counts))
    out_hkl = np.zeros((bsz, width, 3), dtype=np.int64)
    out_count = np.zeros((bsz, width), dtype=np.int64)
    for b in range(bsz):
        out_hkl[b, : len(counts[b])] = reps[b]
        out_count[b, : len(counts[b])] = counts[b]
    return torch.from_numpy(out_hkl).to(hkl.device), torch.from_numpy(out_count).to(hkl.device)


__all__ = ["laue_rotations", "merge_equivalent_reflections"]
