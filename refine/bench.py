"""Synthetic refinement problems (simulated pattern + perturbed starting models) for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from .params import parameterize
from .physics import CrystalBatch, Instrument, ProfileParams, simulate
from .radiation import Geometry, Radiation


class SimulatedPattern:
    """A minimal :class:`~xrdsolve.refine.protocols.PatternLike` (2θ degrees, counts, σ = √counts)."""

    def __init__(
        self, two_theta: np.ndarray, intensity: np.ndarray, radiation: Radiation, geometry: Geometry
    ) -> None:
        self.two_theta = np.asarray(two_theta, dtype=float)
        self.intensity = np.asarray(intensity, dtype=float)
        self.sigma = np.sqrt(np.maximum(self.intensity, 1.0))
        self.radiation = radiation
        self.geometry = geometry


def simulate_pattern(
    structure: Structure,
    two_theta: np.ndarray,
    instrument: Instrument | None = None,
    profile: dict[str, float] | None = None,
    background: tuple[float, ...] = (200.0, -30.0, 10.0),
    peak_counts: float = 2.0e4,
    seed: int = 0,
) -> SimulatedPattern:
    """Poisson-noisy pattern of ``structure``; the strongest peak has about ``peak_counts`` counts."""
    inst = instrument or Instrument.lab("CuKa")
    prof = {"U": 2.0, "V": -2.0, "W": 5.0, "X": 1.0, "Y": 2.0}
    prof.update(profile or {})
    cb = CrystalBatch.from_structures([structure])
    grid = torch.as_tensor(two_theta, dtype=torch.float64)
    p = ProfileParams.default(1, **prof)  # type: ignore[arg-type]
    y = simulate(cb, grid, inst, p)
    if not isinstance(y, torch.Tensor):
        raise TypeError("simulate returned per-reflection data")
    scale = peak_counts / max(float(y.max()), 1e-30)
    bg = torch.tensor([list(background)], dtype=torch.float64)
    p = ProfileParams.default(1, scale=scale, background=bg, **prof)  # type: ignore[arg-type]
    y = simulate(cb, grid, inst, p)
    if not isinstance(y, torch.Tensor):
        raise TypeError("simulate returned per-reflection data")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.clip(y[0].numpy(), 0, None)).astype(float)
    return SimulatedPattern(np.asarray(two_theta, dtype=float), counts, inst.radiation, inst.geometry)


def perturb(
    structure: Structure,
    rng: np.random.Generator,
    cell: float = 0.01,
    xyz: float = 0.02,
    b_factor: float = 2.0,
) -> Structure:
    """A symmetry-preserving perturbation: lattice parameters ×(1 ± cell), free coordinates ± xyz, B × b_factor."""
    ph = parameterize(structure)
    v = ph.values.copy()
    lat = ph.block("lattice")
    # scale the metric by (1 + δ)² on the diagonal-dominant terms: perturb lengths by ±cell
    v[lat] = v[lat] * (1.0 + rng.uniform(-cell, cell, size=lat.size)) ** 2
    xi = ph.block("xyz")
    v[xi] = v[xi] + rng.uniform(-xyz, xyz, size=xi.size)
    bi = ph.block("biso")
    v[bi] = v[bi] * b_factor
    return ph.to_structure(v)


def make_benchmark_problem(
    n_candidates: int, seed: int = 0
) -> tuple[SimulatedPattern, Structure, list[Structure]]:
    """Rutile-like TiO2 (P4₂/mnm) on Cu Kα, 2θ 15–90° step 0.02°, and ``n_candidates`` perturbed starts."""
    truth = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3049, 0.3049, 0]]
    )
    truth.add_site_property("b_iso", [0.5 if str(s.specie) == "Ti" else 0.8 for s in truth])
    pattern = simulate_pattern(truth, np.arange(15.0, 90.0, 0.02), seed=seed)
    rng = np.random.default_rng(seed)
    return pattern, truth, [perturb(truth, rng) for _ in range(n_candidates)]
