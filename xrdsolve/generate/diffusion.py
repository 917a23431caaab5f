"""Diffusion schedules and the training loss.

Lattice: variance-preserving diffusion of the normalised log-metric parameters (6 numbers, see lattice.py)
with a cosine schedule; the network predicts the noise ε. Fractional coordinates: variance-exploding
wrapped-normal diffusion on the torus with σ(t) = σ_min^(1−t) σ_max^t; the network predicts the score
normalised by √E[score²] (DiffCSP). Time t ∈ (0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor

from . import wrapped_normal as wn
from .lattice import lattice_to_params, params_to_lattice


@dataclass
class DiffusionConfig:
    sigma_min: float = 0.005
    sigma_max: float = 0.5
    cosine_s: float = 0.008
    lattice_weight: float = 1.0
    coord_weight: float = 1.0
    # mean / std of the normalised lattice parameters; fitted to the MP-20 training rows when
    # fit_lattice_stats is true, else taken as given
    fit_lattice_stats: bool = True
    lat_mean: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    lat_std: tuple[float, ...] = (0.15, 0.15, 0.15, 0.15, 0.15, 0.15)


@dataclass
class CrystalTensors:
    """Padded batch: atomic numbers (B,N) long, frac (B,N,3), lattice (B,3,3) Å (rows a,b,c), mask (B,N)."""

    species: Tensor
    frac: Tensor
    lattice: Tensor
    mask: Tensor

    @property
    def n_atoms(self) -> Tensor:
        return self.mask.sum(1)

    def to(self, device: torch.device | str) -> CrystalTensors:
        return CrystalTensors(*(x.to(device) for x in (self.species, self.frac, self.lattice, self.mask)))

    def index(self, idx: Tensor) -> CrystalTensors:
        return CrystalTensors(self.species[idx], self.frac[idx], self.lattice[idx], self.mask[idx])

    @classmethod
    def from_structures(
        cls, structures: Sequence[Structure], dtype: torch.dtype = torch.float32
    ) -> CrystalTensors:
        n = max(len(s) for s in structures)
        b = len(structures)
        species = torch.zeros(b, n, dtype=torch.long)
        frac = torch.zeros(b, n, 3, dtype=dtype)
        lattice = torch.zeros(b, 3, 3, dtype=dtype)
        mask = torch.zeros(b, n, dtype=torch.bool)
        for i, s in enumerate(structures):
            k = len(s)
            species[i, :k] = torch.tensor([site.specie.Z for site in s])
            frac[i, :k] = torch.tensor(s.frac_coords % 1.0, dtype=dtype)
            lattice[i] = torch.tensor(s.lattice.matrix, dtype=dtype)
            mask[i, :k] = True
        return cls(species, frac, lattice, mask)

    def to_structures(self) -> list[Structure]:
        out = []
        for i in range(self.species.shape[0]):
            m = self.mask[i]
            out.append(
                Structure(
                    Lattice(self.lattice[i].detach().double().cpu().numpy()),
                    self.species[i][m].tolist(),
                    self.frac[i][m].detach().double().cpu().numpy() % 1.0,
                )
            )
        return out


class Schedule:
    """Noise schedules for the lattice (VP, cosine) and coordinates (VE wrapped normal)."""

    def __init__(self, cfg: DiffusionConfig) -> None:
        self.cfg = cfg
        sig = torch.exp(
            torch.linspace(math.log(cfg.sigma_min), math.log(cfg.sigma_max), 512, dtype=torch.float64)
        )
        self._sig_grid = sig
        self._norm_grid = wn.score_second_moment(sig).sqrt()

    def alpha_bar(self, t: Tensor) -> Tensor:
        s = self.cfg.cosine_s
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
        return (f / f0).clamp(1e-5, 1.0)

    def sigma(self, t: Tensor) -> Tensor:
        c = self.cfg
        return c.sigma_min ** (1 - t) * c.sigma_max**t

    def score_norm(self, sigma: Tensor) -> Tensor:
        """√E[score²] of WN(0, σ²), interpolated on a log grid."""
        ls = torch.log(sigma.double()).clamp(math.log(self.cfg.sigma_min), math.log(self.cfg.sigma_max))
        pos = (ls - math.log(self.cfg.sigma_min)) / (
            math.log(self.cfg.sigma_max) - math.log(self.cfg.sigma_min)
        )
        x = pos * (len(self._sig_grid) - 1)
        i0 = x.floor().long().clamp(0, len(self._sig_grid) - 2)
        w = x - i0
        y = self._norm_grid.to(sigma.device)
        return ((1 - w) * y[i0] + w * y[i0 + 1]).to(sigma.dtype)

    # lattice normalisation ----------------------------------------------------------------------
    def lat_encode(self, lattice: Tensor, n_atoms: Tensor) -> Tensor:
        p = lattice_to_params(lattice, n_atoms)
        mean = torch.tensor(self.cfg.lat_mean, dtype=p.dtype, device=p.device)
        std = torch.tensor(self.cfg.lat_std, dtype=p.dtype, device=p.device)
        return (p - mean) / std

    def lat_decode(self, z: Tensor, n_atoms: Tensor) -> Tensor:
        mean = torch.tensor(self.cfg.lat_mean, dtype=z.dtype, device=z.device)
        std = torch.tensor(self.cfg.lat_std, dtype=z.dtype, device=z.device)
        return params_to_lattice(z * std + mean, n_atoms)


def lattice_statistics(lattices: Tensor, n_atoms: Tensor) -> tuple[list[float], list[float]]:
    """Mean and std of the normalised lattice parameters over a training set (for DiffusionConfig)."""
    p = lattice_to_params(lattices.double(), n_atoms)
    return p.mean(0).tolist(), p.std(0).clamp_min(0.05).tolist()


def diffusion_loss(
    model: torch.nn.Module,
    schedule: Schedule,
    batch: CrystalTensors,
    cond: Tensor,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Denoising score-matching loss of ``model`` on a clean ``batch`` conditioned on ``cond`` (B,D).

    ``t`` and ``noise`` (lattice ε (B,6), coordinate ε (B,N,3)) may be fixed, e.g. for invariance tests.
    """
    b = batch.species.shape[0]
    dev = batch.frac.device
    dtype = batch.frac.dtype
    if t is None:
        t = torch.rand(b, generator=generator, device=dev, dtype=dtype) * (1 - 1e-3) + 1e-3
    if noise is None:
        eps_l = torch.randn(b, 6, generator=generator, device=dev, dtype=dtype)
        eps_x = torch.randn(batch.frac.shape, generator=generator, device=dev, dtype=dtype)
    else:
        eps_l, eps_x = noise
    maskf = batch.mask.to(dtype)
    n = batch.mask.sum(1)
    l0 = schedule.lat_encode(batch.lattice, n).to(dtype)
    ab = schedule.alpha_bar(t)[:, None]
    lt = ab.sqrt() * l0 + (1 - ab).sqrt() * eps_l
    sig = schedule.sigma(t)
    xt = wn.wrap(batch.frac + sig[:, None, None] * eps_x)
    target = wn.score(xt - batch.frac, sig[:, None, None]) / schedule.score_norm(sig)[:, None, None]
    pred_x, pred_l = model(batch.species, xt, lt, t, cond, batch.mask)
    loss_x = (((pred_x - target) ** 2) * maskf[..., None]).sum((1, 2)) / (3 * n.clamp_min(1))
    loss_l = ((pred_l - eps_l) ** 2).mean(1)
    cfg = schedule.cfg
    loss = (cfg.coord_weight * loss_x + cfg.lattice_weight * loss_l).mean()
    return loss, {
        "loss": float(loss.detach()),
        "coord": float(loss_x.detach().mean()),
        "lattice": float(loss_l.detach().mean()),
    }
