"""The forward model: Bragg intensities per reflection and the full calculated powder pattern.

Integrated intensity of reflection h at wavelength λ_j (weight w_j):
    I = scale · m · |F(h)|² · LP(2θ_j) · PO(h) · w_j,
with m = 2 for a Friedel pair (half-sphere enumeration without anomalous scattering) else 1. The pattern is
    y(2θ) = Σ_h,j I_hj · Φ(2θ − 2θ_hj − Δ) + background(2θ),
with Δ = zero + displacement shift, Φ the TCH pseudo-Voigt (optionally FCJ-asymmetric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import RefineError
from ..radiation import Geometry
from .background import chebyshev_background
from .batch import CrystalBatch
from .intensity import lorentz_polarisation, march_dollase
from .lattice import d_min_for, generate_hkl, reciprocal_lattice
from .params import Instrument, ProfileParams
from .profile import fcj_subpeaks, render_peaks, tch_widths
from .scattering import check_species
from .structure_factor import structure_factor_flat

#: Extra 2θ (degrees) beyond the grid's upper end for which reflections are generated (tails, zero shift).
HKL_MARGIN_DEG = 2.0
#: Fixed quadrature points of the FCJ asymmetry in :func:`~.profile.fcj_offsets` callers outside ``simulate``
#: (``simulate`` itself chooses 1–64 nodes per peak with :func:`~.profile.fcj_subpeaks`).
FCJ_POINTS = 8


@dataclass
class ReflectionData:
    """Per-reflection quantities; L = number of wavelengths.

    hkl (B,R,3); mask (B,R); d (B,R) Å; multiplicity (B,R) (Friedel factor 2 or 1); f_squared (B,R,L);
    two_theta (B,R,L) degrees (Bragg angle, before zero/displacement); lp (B,R,L); po (B,R);
    intensity (B,R,L) integrated intensity including scale and wavelength weight; valid (B,R,L) bool.
    """

    hkl: Tensor
    mask: Tensor
    d: Tensor
    multiplicity: Tensor
    f_squared: Tensor
    two_theta: Tensor
    lp: Tensor
    po: Tensor
    intensity: Tensor
    valid: Tensor


def default_hkl(
    crystals: CrystalBatch, instrument: Instrument, two_theta_max: float, margin: float = HKL_MARGIN_DEG
) -> tuple[Tensor, Tensor]:
    """Reflections needed up to 2θ_max (degrees) + margin for the shortest wavelength."""
    lam = min(instrument.radiation.wavelengths)
    d_min = d_min_for(min(two_theta_max + margin, 179.0), lam)
    return generate_hkl(crystals.lattice, d_min, friedel=not instrument.anomalous)


def bragg_intensities(
    crystals: CrystalBatch,
    instrument: Instrument,
    profile: ProfileParams | None = None,
    hkl: tuple[Tensor, Tensor] | None = None,
    two_theta_max: float = 90.0,
) -> ReflectionData:
    """|F|², multiplicity, LP, PO and integrated intensity per reflection and wavelength.

    ``hkl`` from :func:`generate_hkl` (half sphere unless ``instrument.anomalous``); generated for
    ``two_theta_max`` (degrees) when None. ``profile`` supplies scale and po_ratio (defaults 1).
    """
    dtype = crystals.lattice.dtype
    bsz = crystals.batch_size
    if not instrument.is_neutron:
        check_species(crystals.species, crystals.mask, instrument.form_factors)
    if hkl is None:
        hkl = default_hkl(crystals, instrument, two_theta_max)
    hkl_t, hmask = hkl
    if hkl_t.shape[0] != bsz:
        raise RefineError(f"hkl batch {hkl_t.shape[0]} does not match {bsz} crystals")
    rec = reciprocal_lattice(crystals.lattice)
    g = hkl_t.to(dtype) @ rec  # (B,R,3)
    g2 = (g * g).sum(-1)
    safe_g2 = torch.where(hmask, g2, torch.ones_like(g2))
    d = 1.0 / torch.sqrt(safe_g2)
    s2 = 0.25 * safe_g2  # (sinθ/λ)²
    wl = instrument.radiation.wavelengths
    wts = instrument.radiation.normalized_weights
    lam = torch.as_tensor(wl, dtype=dtype, device=crystals.lattice.device)
    wt = torch.as_tensor(wts, dtype=dtype, device=crystals.lattice.device)
    neutron = instrument.is_neutron
    flat = torch.nonzero(hmask.reshape(-1)).squeeze(1)
    cidx = torch.div(flat, hmask.shape[1], rounding_mode="floor")
    hkl_flat = hkl_t.reshape(-1, 3)[flat]
    s2_flat = s2.reshape(-1)[flat]

    def fsq_padded(wavelength: float | None) -> Tensor:
        re, im = structure_factor_flat(
            crystals,
            hkl_flat,
            cidx,
            s2_flat,
            table=instrument.form_factors,
            neutron=neutron,
            wavelength=wavelength,
        )
        out = s2.new_zeros(hmask.numel())
        return out.index_put((flat,), re * re + im * im).view(hmask.shape)

    if instrument.anomalous and not neutron:
        f_squared = torch.stack([fsq_padded(w) for w in wl], dim=-1)
        mult = torch.ones_like(d)
    else:
        f_squared = fsq_padded(None)[..., None].expand(-1, -1, len(wl))
        mult = torch.full_like(d, 2.0)
    sin_t = lam[None, None, :] / (2.0 * d[..., None])  # (B,R,L)
    valid = hmask[..., None] & (sin_t < 1.0)
    sin_safe = torch.where(valid, sin_t, torch.full_like(sin_t, 0.5))
    two_theta_rad = 2.0 * torch.asin(sin_safe)
    lp = lorentz_polarisation(
        two_theta_rad, instrument.polarisation, instrument.monochromator_two_theta, neutron=neutron
    )
    scale = torch.ones(bsz, dtype=dtype) if profile is None else profile.scale
    ratio = torch.ones(bsz, dtype=dtype) if profile is None else profile.po_ratio
    axis = torch.as_tensor(instrument.po_axis, dtype=dtype, device=rec.device)
    axis_vec = (axis[None, None, :] @ rec)[:, 0, :]  # (B,3)
    po = march_dollase(torch.where(hmask[..., None], g, torch.ones_like(g)), axis_vec, ratio)
    po = torch.where(hmask, po, torch.zeros_like(po))
    intensity = scale[:, None, None] * (mult * po)[..., None] * f_squared * lp * wt[None, None, :]
    intensity = torch.where(valid, intensity, torch.zeros_like(intensity))
    return ReflectionData(
        hkl=hkl_t,
        mask=hmask,
        d=torch.where(hmask, d, torch.zeros_like(d)),
        multiplicity=torch.where(hmask, mult, torch.zeros_like(mult)),
        f_squared=f_squared,
        two_theta=torch.rad2deg(two_theta_rad),
        lp=lp,
        po=po,
        intensity=intensity,
        valid=valid,
    )


def peak_shift(two_theta_deg: Tensor, profile: ProfileParams, instrument: Instrument) -> Tensor:
    """Observed minus Bragg position (degrees): zero + sample displacement (GSAS-II conventions).

    Bragg–Brentano: −(0.09/(πR))·4·s·cosθ (s = displacement in μm, R = goniometer radius in mm), i.e.
    Δ2θ = −2 s cosθ / R in radians. Debye–Scherrer: −(0.09/(πR))·s·cos2θ (GSAS-II DisplaceX).
    """
    const = 0.09 / (math.pi * instrument.goniometer_radius)
    tt = torch.deg2rad(two_theta_deg)
    disp = profile.displacement.reshape(-1, *([1] * (two_theta_deg.ndim - 1)))
    zero = profile.zero.reshape(-1, *([1] * (two_theta_deg.ndim - 1)))
    if instrument.geometry is Geometry.DEBYE_SCHERRER:
        shift = -const * disp * torch.cos(tt)
    else:
        shift = -const * 4.0 * disp * torch.cos(0.5 * tt)
    return zero + shift


def _peak_shift_flat(bragg: Tensor, bidx: Tensor, profile: ProfileParams, instrument: Instrument) -> Tensor:
    const = 0.09 / (math.pi * instrument.goniometer_radius)
    tt = torch.deg2rad(bragg)
    disp = profile.displacement[bidx]
    if instrument.geometry is Geometry.DEBYE_SCHERRER:
        shift = -const * disp * torch.cos(tt)
    else:
        shift = -const * 4.0 * disp * torch.cos(0.5 * tt)
    return profile.zero[bidx] + shift


def merge_coincident(
    bidx: Tensor, lidx: Tensor, two_theta: Tensor, intensity: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Merge peaks of the same crystal and wavelength whose Bragg 2θ coincide (symmetry equivalents).

    Positions are intensity-weighted means, areas sums; at exact coincidence the merged peak and its first
    derivatives equal the sum of the separate peaks. Tolerance 1e-8° (float64) or 1e-4° (float32).
    Returns (batch_index, two_theta, area) of the merged peaks.
    """
    if two_theta.numel() == 0:
        return bidx, two_theta, intensity
    tol = 1e-8 if two_theta.dtype == torch.float64 else 1e-4
    n_l = int(lidx.max()) + 1
    key_tt = torch.round(two_theta.detach() / tol).to(torch.int64)
    key = (bidx * n_l + lidx) * (int(key_tt.max()) + 1) + key_tt
    uniq, inv = torch.unique(key, return_inverse=True)
    g = uniq.shape[0]
    w = intensity + torch.finfo(intensity.dtype).tiny * 1e6
    area = intensity.new_zeros(g).index_add(0, inv, intensity)
    wsum = w.new_zeros(g).index_add(0, inv, w)
    tt = two_theta.new_zeros(g).index_add(0, inv, w * two_theta) / wsum
    b = torch.zeros(g, dtype=bidx.dtype, device=bidx.device).scatter(0, inv, bidx)
    return b, tt, area


def simulate(
    crystals: CrystalBatch,
    two_theta: Tensor,
    instrument: Instrument,
    profile: ProfileParams,
    hkl: tuple[Tensor, Tensor] | None = None,
    per_reflection: bool = False,
) -> Tensor | tuple[Tensor, ReflectionData]:
    """Calculated powder pattern (B,M) on an increasing 2θ grid (M,) in degrees (non-uniform allowed).

    Background included. Differentiable w.r.t. every floating tensor of ``crystals`` and ``profile``; dtype
    follows ``crystals``. ``hkl`` as returned by :func:`generate_hkl` (reuse it while the lattice changes a
    little); generated for the grid's 2θ max + 2° when None. With ``per_reflection`` returns
    ``(pattern, ReflectionData)``.
    """
    dtype = crystals.lattice.dtype
    grid = torch.as_tensor(two_theta, dtype=dtype, device=crystals.lattice.device)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise RefineError("two_theta must be a 1-D grid with at least two points")
    if bool((grid[1:] <= grid[:-1]).any()):
        raise RefineError("two_theta must be strictly increasing")
    bsz = crystals.batch_size
    if profile.scale.dtype != dtype or profile.scale.device != grid.device:
        profile = profile.to(dtype=dtype, device=grid.device)
    refl = bragg_intensities(crystals, instrument, profile, hkl, float(grid[-1]))
    n_wl = refl.two_theta.shape[-1]
    sel = torch.nonzero(refl.valid.reshape(-1)).squeeze(1)
    bidx = torch.div(sel, refl.two_theta.shape[1] * n_wl, rounding_mode="floor")
    lidx = sel % n_wl
    bidx, bragg, area = merge_coincident(
        bidx, lidx, refl.two_theta.reshape(-1)[sel], refl.intensity.reshape(-1)[sel]
    )
    centre = bragg + _peak_shift_flat(bragg, bidx, profile, instrument)
    theta = torch.deg2rad(0.5 * bragg)
    fwhm, eta = tch_widths(
        theta, profile.U[bidx], profile.V[bidx], profile.W[bidx], profile.X[bidx], profile.Y[bidx]
    )
    if bool((profile.asym > 0).any()):
        parent, off, w = fcj_subpeaks(bragg, profile.asym[bidx], fwhm)
        centre = centre[parent] + off
        area = area[parent] * w
        fwhm, eta, bidx = fwhm[parent], eta[parent], bidx[parent]
    pattern = render_peaks(grid, bidx, centre, area, fwhm, eta, bsz, instrument.window_fwhm)
    pattern = pattern + chebyshev_background(grid, profile.background, profile.inv_two_theta)
    if per_reflection:
        return pattern, refl
    return pattern
