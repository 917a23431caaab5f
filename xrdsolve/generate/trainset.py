"""Training set assembly: structures as padded tensors, weighted sources, and a cache of encoded patterns.

Patterns are simulated with :mod:`xrdsolve.conditioning.augment` (the refine.physics forward model) and
resampled onto the encoder's Q grid; one encoded pattern per structure is cached in memory (float16) and
re-simulated with probability ``refresh`` each time the structure is drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Element, Structure

from xrdsolve.conditioning.augment import AugmentConfig, augment_batch
from xrdsolve.conditioning.preprocess import QGrid, encode_arrays

from .diffusion import CrystalTensors

log = logging.getLogger(__name__)

_PHYS_INDEX: dict[int, int] = {}


def physics_species(z: np.ndarray) -> np.ndarray:
    """Atomic numbers → indices into the refine.physics scattering table (0 stays 0 for padding)."""
    from xrdsolve.refine.physics import species_index

    out = np.zeros_like(z)
    for val in np.unique(z):
        v = int(val)
        if v == 0:
            continue
        if v not in _PHYS_INDEX:
            _PHYS_INDEX[v] = species_index(Element.from_Z(v).symbol)
        out[z == val] = _PHYS_INDEX[v]
    return out


@dataclass
class PackedStructures:
    """Structures packed into fixed-size arrays (N_max atoms) for fast batching."""

    ids: list[str]
    z: np.ndarray  # (S, N) int atomic numbers, 0 = padding
    frac: np.ndarray  # (S, N, 3)
    lattice: np.ndarray  # (S, 3, 3) Å
    n: np.ndarray  # (S,)

    @classmethod
    def pack(cls, ids: Sequence[str], structures: Sequence[Structure], n_max: int) -> PackedStructures:
        keep = [i for i, s in enumerate(structures) if len(s) <= n_max]
        s_n = len(keep)
        z = np.zeros((s_n, n_max), dtype=np.int64)
        frac = np.zeros((s_n, n_max, 3), dtype=np.float32)
        lat = np.zeros((s_n, 3, 3), dtype=np.float32)
        n = np.zeros(s_n, dtype=np.int64)
        for row, i in enumerate(keep):
            s = structures[i]
            k = len(s)
            z[row, :k] = [site.specie.Z for site in s]
            frac[row, :k] = s.frac_coords % 1.0
            lat[row] = s.lattice.matrix
            n[row] = k
        return cls([ids[i] for i in keep], z, frac, lat, n)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, idx: np.ndarray) -> CrystalTensors:
        k = int(self.n[idx].max())
        z = torch.as_tensor(self.z[idx, :k])
        return CrystalTensors(
            species=z,
            frac=torch.as_tensor(self.frac[idx, :k]),
            lattice=torch.as_tensor(self.lattice[idx]),
            mask=z > 0,
        )


def encode_batch(
    batch: CrystalTensors, rng: np.random.Generator, grid: QGrid, aug: AugmentConfig
) -> np.ndarray:
    """Simulate augmented patterns for a batch and return encoder inputs (B, 2, M) float32."""
    sp = torch.as_tensor(physics_species(batch.species.numpy()))
    sim = augment_batch(batch.lattice, batch.frac, sp, batch.mask, rng, aug)
    q = sim.q()
    return np.stack([encode_arrays(q, row, grid) for row in sim.intensity])


class PatternCache:
    """One cached encoded pattern per (source, structure); refreshed with probability ``refresh``."""

    def __init__(self, grid: QGrid, aug: AugmentConfig, refresh: float = 0.15) -> None:
        self.grid = grid
        self.aug = aug
        self.refresh = refresh
        self._store: dict[tuple[str, int], np.ndarray] = {}

    def get(
        self, source: str, idx: np.ndarray, batch: CrystalTensors, rng: np.random.Generator
    ) -> np.ndarray:
        need = np.array(
            [(source, int(i)) not in self._store or rng.random() < self.refresh for i in idx], dtype=bool
        )
        if need.any():
            sel = torch.as_tensor(np.nonzero(need)[0])
            sub = batch.index(sel)
            k = int(sub.mask.sum(1).max())
            sub = CrystalTensors(sub.species[:, :k], sub.frac[:, :k], sub.lattice, sub.mask[:, :k])
            enc = encode_batch(sub, rng, self.grid, self.aug)
            for j, row in zip(np.nonzero(need)[0], enc, strict=True):
                self._store[(source, int(idx[j]))] = row.astype(np.float16)
        return np.stack([self._store[(source, int(i))].astype(np.float32) for i in idx])

    def __len__(self) -> int:
        return len(self._store)
