"""Randomised instrument and sample effects that make simulated training patterns look measured.

The Bragg part comes from :func:`xrdsolve.refine.physics.simulate` (one forward model for training and
refinement) with random radiation (mostly Cu Kα1/Kα2, also Mo Kα and synchrotron wavelengths), Caglioti
U V W and Lorentzian X (crystallite size) / Y (strain) widths, zero shift, sample displacement, preferred
orientation, B_iso and a small lattice strain. Background (Chebyshev-like polynomial, 1/2θ decay, an
amorphous hump), weak impurity peaks and Poisson counting noise over 2–3 decades are added on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, simulate
from xrdsolve.refine.radiation import Geometry, Radiation


@dataclass
class AugmentConfig:
    p_cu: float = 0.8  # Cu Kα1/Kα2
    p_mo: float = 0.08  # Mo Kα1/Kα2
    p_cu1: float = 0.04  # Cu Kα1 only
    # remaining probability: synchrotron, λ uniform in synchrotron_range (Å)
    synchrotron_range: tuple[float, float] = (0.4, 1.0)
    points: int = 3000  # grid points per pattern
    log10_counts: tuple[float, float] = (2.0, 4.5)  # peak maximum, counts
    strain: float = 0.004  # rms lattice strain
    p_hump: float = 0.3
    p_impurity: float = 0.3
    p_po: float = 0.3
    b_iso: tuple[float, float] = (0.2, 1.5)  # Å²
    cu_range: tuple[float, float] | None = None  # fixed 2θ range (degrees) for Cu patterns, e.g. (5, 90)


@dataclass
class SimulatedPatterns:
    two_theta: np.ndarray  # (M,) degrees
    intensity: np.ndarray  # (B, M) counts
    radiation: Radiation

    def q(self) -> np.ndarray:
        lam = self.radiation.primary_wavelength
        return 4 * np.pi * np.sin(np.deg2rad(self.two_theta / 2)) / lam


def random_setup(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[Instrument, np.ndarray]:
    """A random instrument and its 2θ grid (degrees) covering Q ≈ 0.3–6 Å⁻¹ (lab Cu: 5–90°). Training-time
    simulation leaves out the anomalous terms f′ f″ (a few % of |F|², far below the augmentation's effects)."""
    u = rng.random()
    if u < cfg.p_cu:
        inst = Instrument.lab("CuKa", anomalous=False)
        lo, hi = rng.uniform(4.0, 10.0), rng.uniform(80.0, 100.0)
        if cfg.cu_range is not None:
            lo, hi = cfg.cu_range
    elif u < cfg.p_cu + cfg.p_mo:
        inst = Instrument.lab("MoKa", anomalous=False)
        lo, hi = rng.uniform(2.0, 4.0), rng.uniform(38.0, 50.0)
    elif u < cfg.p_cu + cfg.p_mo + cfg.p_cu1:
        inst = Instrument.lab("CuKa1", monochromator_two_theta=26.6, anomalous=False)
        lo, hi = rng.uniform(4.0, 10.0), rng.uniform(80.0, 100.0)
    else:
        lam = rng.uniform(*cfg.synchrotron_range)
        inst = Instrument.synchrotron(lam, anomalous=False)
        lo = np.rad2deg(2 * np.arcsin(0.3 * lam / (4 * np.pi)))
        hi = np.rad2deg(2 * np.arcsin(min(0.99, 6.0 * lam / (4 * np.pi))))
    return inst, np.linspace(lo, hi, cfg.points)


def random_profile(rng: np.random.Generator, b: int, inst: Instrument, dtype: torch.dtype) -> ProfileParams:
    """Random GSAS-II-unit profile parameters (B,)."""
    synch = inst.geometry is Geometry.DEBYE_SCHERRER and len(inst.radiation.wavelengths) == 1
    width = 0.15 if synch else 1.0
    U = rng.uniform(0, 40, b) * width
    W = rng.uniform(1, 25, b) * width
    V = -rng.uniform(0, 1, b) * np.sqrt(U * W)
    X = rng.exponential(3.0, b) * width
    Y = rng.exponential(3.0, b) * width
    zero = rng.normal(0, 0.04, b)
    disp = rng.normal(0, 60, b) if inst.geometry is Geometry.BRAGG_BRENTANO else np.zeros(b)
    po = np.where(rng.random(b) < 0.3, rng.uniform(0.75, 1.3, b), 1.0)

    def tt(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype)

    return ProfileParams.default(
        b, dtype=dtype, U=tt(U), V=tt(V), W=tt(W), X=tt(X), Y=tt(Y), zero=tt(zero), displacement=tt(disp),
        po_ratio=tt(po),
    )  # fmt: skip


def _gauss(x: np.ndarray, centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((x[None, :] - centre[:, None]) / width[:, None]) ** 2)


def symmetric_strain(eps: np.ndarray, rotations: np.ndarray | None) -> np.ndarray:
    """The part of a symmetric strain ``eps`` (3,3) invariant under Cartesian ``rotations`` (K,3,3):
    (1/K) Σ R ε Rᵀ. None leaves ``eps`` as it is."""
    if rotations is None or len(rotations) == 0:
        return eps
    r = np.asarray(rotations, dtype=float)
    return np.asarray(np.einsum("kij,jl,kml->im", r, eps, r) / len(r))


def augment_batch(
    lattice: torch.Tensor,
    frac: torch.Tensor,
    species_index: torch.Tensor,
    mask: torch.Tensor,
    rng: np.random.Generator,
    cfg: AugmentConfig | None = None,
    rotations: Sequence[np.ndarray | None] | None = None,
) -> SimulatedPatterns:
    """Simulate B randomly measured-looking patterns (counts) for crystals given as tensors.

    lattice (B,3,3) Å rows a,b,c; frac (B,N,3); species_index (B,N) indices into the physics scattering
    table; mask (B,N). One random radiation and grid per call, other effects random per pattern.
    ``rotations``: per crystal, the Cartesian rotation matrices (K,3,3) of its point group; the random strain
    is then averaged over them, so it keeps the crystal's symmetry (a cubic crystal stays metrically cubic,
    as a measured one would). Without them the strain is a general symmetric tensor (training-time
    robustness).
    """
    cfg = cfg or AugmentConfig()
    b = lattice.shape[0]
    dtype = torch.float32
    inst, grid = random_setup(rng, cfg)
    eps = rng.normal(0, cfg.strain, (b, 3, 3))
    eps = 0.5 * (eps + eps.transpose(0, 2, 1))
    if rotations is not None:
        eps = np.stack([symmetric_strain(e, r) for e, r in zip(eps, rotations, strict=True)])
    strain = torch.as_tensor(np.eye(3)[None] + eps, dtype=dtype)
    lat = lattice.to(dtype) @ strain
    b_iso = torch.as_tensor(rng.uniform(*cfg.b_iso, b), dtype=dtype)[:, None].expand(mask.shape).clone()
    crystals = CrystalBatch(
        lattice=lat,
        frac=frac.to(dtype),
        species=species_index,
        occ=mask.to(dtype),
        b_iso=b_iso,
        mask=mask,
    )
    if rng.random() < cfg.p_po:
        axes = [(0, 0, 1), (1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 1, 0)]
        ax = axes[int(rng.integers(len(axes)))]
        inst = Instrument(
            radiation=inst.radiation, geometry=inst.geometry, polarisation=inst.polarisation,
            monochromator_two_theta=inst.monochromator_two_theta, po_axis=ax, window_fwhm=8.0,
        )  # fmt: skip
    else:
        inst = Instrument(
            radiation=inst.radiation, geometry=inst.geometry, polarisation=inst.polarisation,
            monochromator_two_theta=inst.monochromator_two_theta, window_fwhm=8.0,
        )  # fmt: skip
    prof = random_profile(rng, b, inst, dtype)
    with torch.no_grad():
        y = simulate(crystals, torch.as_tensor(grid, dtype=dtype), inst, prof)
    assert isinstance(y, torch.Tensor)
    y_np = y.double().cpu().numpy()
    top = y_np.max(1, keepdims=True)
    top[top <= 0] = 1.0
    peak = 10 ** rng.uniform(*cfg.log10_counts, (b, 1))
    y_np = y_np / top * peak
    # background: smooth polynomial + 1/2θ decay + optional amorphous hump
    xs = (grid - grid[0]) / (grid[-1] - grid[0]) * 2 - 1
    level = peak * rng.uniform(0.005, 0.3, (b, 1))
    coef = rng.normal(0, 0.3, (b, 3))
    poly = 1 + coef[:, :1] * xs + coef[:, 1:2] * (2 * xs**2 - 1) + coef[:, 2:3] * (4 * xs**3 - 3 * xs)
    bg = level * np.clip(poly, 0.2, None)
    bg += level * rng.uniform(0, 2, (b, 1)) * (grid[0] / grid)[None]
    hump = rng.random(b) < cfg.p_hump
    if hump.any():
        span = grid[-1] - grid[0]
        centre = grid[0] + span * rng.uniform(0.1, 0.4, b)
        width = span * rng.uniform(0.04, 0.12, b)
        bg += (hump[:, None] * peak * rng.uniform(0.02, 0.25, (b, 1))) * _gauss(grid, centre, width)
    imp = rng.random(b) < cfg.p_impurity
    if imp.any():
        for _ in range(3):
            centre = rng.uniform(grid[0], grid[-1], b)
            width = np.full(b, (grid[-1] - grid[0]) * 0.0015)
            amp = imp[:, None] * peak * rng.uniform(0.005, 0.05, (b, 1)) * (rng.random((b, 1)) < 0.7)
            bg += amp * _gauss(grid, centre, width)
    counts = rng.poisson(np.clip(y_np + bg, 0, None)).astype(np.float64)
    return SimulatedPatterns(grid, counts, inst.radiation)
