"""Rotation-invariant lattice parameterisation: the symmetric matrix logarithm of the metric tensor.

A lattice with rows a, b, c (Å) has metric G = L Lᵀ (Å², invariant under rotations of the cell). Its
matrix logarithm S = ½ log G is an unconstrained symmetric 3×3 matrix (6 numbers); every symmetric S maps
back to a valid lattice (G = exp 2S is positive definite), so S can be diffused in Euclidean space.
The scale s = (N · v₀)^(1/3) (Å, with v₀ the reference volume per atom) is removed: S' = S − log(s)·I.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_IU = (torch.tensor([0, 1, 2, 0, 0, 1]), torch.tensor([0, 1, 2, 1, 2, 2]))
_W = torch.tensor([1.0, 1.0, 1.0, math.sqrt(2.0), math.sqrt(2.0), math.sqrt(2.0)])

#: Reference volume per atom, Å³, for the scale normalisation.
VOLUME_PER_ATOM = 18.0


def sym_to_vec(s: Tensor) -> Tensor:
    """(…,3,3) symmetric → (…,6) with off-diagonals × √2 (so the Euclidean norm is the Frobenius norm)."""
    return s[..., _IU[0], _IU[1]] * _W.to(s)


def vec_to_sym(v: Tensor) -> Tensor:
    """(…,6) → (…,3,3) symmetric (inverse of :func:`sym_to_vec`)."""
    x = v / _W.to(v)
    out = v.new_zeros((*v.shape[:-1], 3, 3))
    out[..., _IU[0], _IU[1]] = x
    out[..., _IU[1], _IU[0]] = x
    return out


def metric(lattice: Tensor) -> Tensor:
    """Metric tensor G = L Lᵀ (Å²) of lattices (…,3,3) with rows a, b, c."""
    return lattice @ lattice.transpose(-1, -2)


def lattice_to_params(lattice: Tensor, n_atoms: Tensor | None = None) -> Tensor:
    """Lattice (…,3,3) Å → 6 rotation-invariant parameters (½ log G, minus log scale when ``n_atoms`` given)."""
    g = metric(lattice.to(torch.float64))
    evals, evecs = torch.linalg.eigh(g)
    s = 0.5 * evecs @ torch.diag_embed(torch.log(evals.clamp_min(1e-12))) @ evecs.transpose(-1, -2)
    if n_atoms is not None:
        s = s - log_scale(n_atoms).to(s)[..., None, None] * torch.eye(3, dtype=s.dtype, device=s.device)
    return sym_to_vec(s).to(lattice.dtype)


def params_to_lattice(params: Tensor, n_atoms: Tensor | None = None) -> Tensor:
    """Inverse of :func:`lattice_to_params`: lower-triangular lattice (…,3,3) Å, a along x, b in the xy plane."""
    s = vec_to_sym(params.to(torch.float64))
    if n_atoms is not None:
        s = s + log_scale(n_atoms).to(s)[..., None, None] * torch.eye(3, dtype=s.dtype, device=s.device)
    evals, evecs = torch.linalg.eigh(s)
    g = evecs @ torch.diag_embed(torch.exp(2.0 * evals.clamp(-10, 10))) @ evecs.transpose(-1, -2)
    g = 0.5 * (g + g.transpose(-1, -2))
    return torch.linalg.cholesky(g).to(params.dtype)


def log_scale(n_atoms: Tensor) -> Tensor:
    """log of the length scale (N · VOLUME_PER_ATOM)^(1/3), Å."""
    return torch.log(n_atoms.to(torch.float64).clamp_min(1) * VOLUME_PER_ATOM) / 3.0
