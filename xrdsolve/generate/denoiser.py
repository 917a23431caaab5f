"""The crystal denoiser: periodic, permutation-equivariant, rotation-invariant dense all-pairs network.

Inputs are atom types, noisy fractional coordinates (B,N,3), the noisy lattice in the invariant log-metric
parameterisation (B,6), the diffusion time and a condition vector (pattern + composition embedding).
Pair features use only fractional *differences* (Fourier features, so periodic and origin-free) and the
lattice metric (inner products, so rotation-free); messages are averaged over all atoms (permutation-
equivariant). Outputs: the normalised coordinate score (B,N,3) and the lattice noise ε̂ (B,6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .lattice import vec_to_sym
from .wrapped_normal import wrap_centered


@dataclass
class DenoiserConfig:
    hidden: int = 128
    layers: int = 4
    n_freq: int = 4  # Fourier frequencies per axis for fractional differences
    n_rbf: int = 16  # radial basis functions of the (normalised) pair distance
    cond_dim: int = 384  # pattern embedding + composition embedding
    max_z: int = 100


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t ∈ [0, 1] (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    ang = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class _Layer(nn.Module):
    def __init__(self, h: int, e: int) -> None:
        super().__init__()
        self.src = nn.Linear(h, h)
        self.dst = nn.Linear(h, h, bias=False)
        self.edge = nn.Linear(e, h, bias=False)
        self.msg = nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        self.upd = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h))
        self.norm = nn.LayerNorm(h, elementwise_affine=False)
        self.film = nn.Linear(h, 2 * h)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: Tensor, e: Tensor, pair_mask: Tensor, n: Tensor, c: Tensor) -> Tensor:
        # m_ij = MLP(A h_i + B h_j + C e_ij); the first layer is split so node terms cost O(N), not O(N²)
        m = self.src(h)[:, :, None] + self.dst(h)[:, None, :] + self.edge(e)
        m = self.msg(m) * pair_mask[..., None]
        agg = m.sum(2) / n[:, None, None]
        h = h + self.upd(torch.cat([h, agg], dim=-1))
        gamma, beta = self.film(c).chunk(2, dim=-1)
        return self.norm(h) * (1 + gamma[:, None]) + beta[:, None]


class Denoiser(nn.Module):
    """Joint score network for fractional coordinates and the lattice (see module docstring)."""

    def __init__(self, cfg: DenoiserConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DenoiserConfig()
        h = cfg.hidden
        self.type_emb = nn.Embedding(cfg.max_z + 1, h)
        self.cond = nn.Sequential(nn.Linear(cfg.cond_dim + h + 6, h), nn.SiLU(), nn.Linear(h, h))
        e_dim = 6 * cfg.n_freq + cfg.n_rbf + 6
        self.layers = nn.ModuleList([_Layer(h, e_dim) for _ in range(cfg.layers)])
        self.coord_out = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 3))
        self.lat_out = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, 6))
        self._freq: Tensor
        self._rbf: Tensor
        self.register_buffer("_freq", 2 * math.pi * torch.arange(1, cfg.n_freq + 1, dtype=torch.float32))
        self.register_buffer("_rbf", torch.linspace(0.0, 2.0, cfg.n_rbf))

    def pair_features(self, frac: Tensor, lat_vec: Tensor) -> Tensor:
        """(B,N,N,E): Fourier features of x_j − x_i, RBF of the min-image distance / scale, lattice params."""
        d = wrap_centered(frac[:, None, :, :] - frac[:, :, None, :])  # (B,N,N,3)
        ang = d[..., None] * self._freq  # (B,N,N,3,F)
        four = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).flatten(-2)
        # distances in units of the cell scale: G' = exp(2 S') is the scale-free metric
        s = vec_to_sym(lat_vec)
        evals, evecs = torch.linalg.eigh(s)
        g = evecs @ torch.diag_embed(torch.exp(2 * evals.clamp(-3, 3))) @ evecs.transpose(-1, -2)
        r = torch.sqrt((torch.einsum("bijx,bxy,bijy->bij", d, g, d)).clamp_min(1e-8))
        rbf = torch.exp(-((r[..., None] - self._rbf) ** 2) / (2 * 0.125**2))
        lat = lat_vec[:, None, None, :].expand(-1, d.shape[1], d.shape[2], -1)
        return torch.cat([four, rbf, lat], dim=-1)

    def forward(
        self, species: Tensor, frac: Tensor, lat_vec: Tensor, t: Tensor, cond: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """species (B,N) long, frac (B,N,3), lat_vec (B,6) normalised, t (B,), cond (B,cond_dim), mask (B,N)."""
        maskf = mask.to(frac.dtype)
        n = maskf.sum(1).clamp_min(1)
        c = self.cond(torch.cat([cond, time_embedding(t, self.cfg.hidden), lat_vec], dim=-1))
        h = self.type_emb(species * mask) + c[:, None]
        e = self.pair_features(frac, lat_vec)
        pair_mask = maskf[:, :, None] * maskf[:, None, :]
        for layer in self.layers:
            h = layer(h, e, pair_mask, n, c) * maskf[..., None]
        coord = self.coord_out(h) * maskf[..., None]
        pooled = (h * maskf[..., None]).sum(1) / n[:, None]
        lat = self.lat_out(torch.cat([pooled, c], dim=-1))
        return coord, lat
