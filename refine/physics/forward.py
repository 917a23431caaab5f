"""The forward model: Bragg intensities per reflection and the full calculated powder pattern.

Integrated intensity of reflection h at wavelength λ_j (weight w_j):
    I = scale · m · |F(h)|² · LP(2θ_j) · PO(h) · w_j,
with m = 2 for a Friedel pair (reflections are enumerated over a half sphere; with anomalous scattering |F|² is
the pair's mean (|F(h)|² + |F(−h)|²)/2, exact because h and −h coincide). The pattern is
    y(2θ) = Σ_h,j I_hj · Φ(2θ − 2θ_hj − Δ) + background(2θ),
with Δ = zero + displacement shift, Φ the TCH pseudo-Voigt (optionally FCJ-asymmetric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from ..errors import RefineError
from ..radiation import Geometry
from .background import chebyshev_background
from .batch import CrystalBatch
from .intensity import lorentz_polarisation
from .lattice import d_min_for, generate_hkl, reciprocal_lattice
from .params import Instrument, ProfileParams
from .profile import axial_subpeaks, lorentz_fwhm, render_peaks, tch_widths
from .scattering import check_species
from .structure_factor import friedel_mean_f_squared_flat, structure_factor_flat

#: Extra 2θ (degrees) beyond the grid's upper end for which reflections are generated (tails, zero shift).
HKL_MARGIN_DEG = 2.0


@dataclass
class ReflectionData:
    """Per-reflection quantities; L = number of wavelengths.

    hkl (B,R,3); mask (B,R) bool, or int counts of merged equivalents; d (B,R) Å; multiplicity (B,R) (2 per
    Friedel pair, times the count of a merged list); f_squared (B,R,L);
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
    return generate_hkl(crystals.lattice, d_min)


@dataclass
class FlatReflections:
    """Per-reflection quantities of the unpadded list of T reflections of a batch (L wavelengths).

    crystal (T,) batch index; row (T,) position in the padded hkl list; hkl (T,3); g (T,3) reciprocal vector
    Å⁻¹; d (T,) Å; multiplicity (T,); f_squared (T,L); two_theta (T,L) degrees; lp (T,L); po (T,);
    intensity (T,L) (zero where invalid); valid (T,L) bool (sin θ < 1).
    """

    crystal: Tensor
    row: Tensor
    hkl: Tensor
    d: Tensor
    multiplicity: Tensor
    f_squared: Tensor
    two_theta: Tensor
    lp: Tensor
    po: Tensor
    intensity: Tensor
    valid: Tensor


def _is_fixed_at(t: Tensor, value: float) -> bool:
    """True when every element equals ``value``, with no gradient and a zero (or no) forward-mode tangent (a
    stacked Jacobian pass over other columns)."""
    if t.requires_grad:
        return False
    tangent = fwad.unpack_dual(t).tangent
    return bool((t.detach() == value).all()) and (tangent is None or not bool(tangent.any()))


def flat_reflections(
    crystals: CrystalBatch,
    instrument: Instrument,
    profile: ProfileParams | None,
    hkl: tuple[Tensor, Tensor],
) -> FlatReflections:
    """|F|², multiplicity, LP, PO and integrated intensity of every listed reflection, as flat (T,…) tensors."""
    dtype = crystals.lattice.dtype
    dev = crystals.lattice.device
    bsz = crystals.batch_size
    hkl_t, hmask = hkl
    if hkl_t.shape[0] != bsz:
        raise RefineError(f"hkl batch {hkl_t.shape[0]} does not match {bsz} crystals")
    merged = hmask.dtype != torch.bool  # counts of equivalent reflections (refine.physics.equivalents)
    flat = torch.nonzero(hmask.reshape(-1)).squeeze(1)
    cidx = torch.div(flat, hmask.shape[1], rounding_mode="floor")
    row = flat - cidx * hmask.shape[1]
    hkl_flat = hkl_t.reshape(-1, 3).index_select(0, flat)
    rec = reciprocal_lattice(crystals.lattice).index_select(0, cidx)  # (T,3,3)
    hf = hkl_flat.to(dtype)
    g = hf[:, 0:1] * rec[:, 0] + hf[:, 1:2] * rec[:, 1] + hf[:, 2:3] * rec[:, 2]  # (T,3)
    g2 = (g * g).sum(-1)
    d = torch.rsqrt(g2)
    s2 = 0.25 * g2  # (sinθ/λ)²
    wl = instrument.radiation.wavelengths
    lam = torch.as_tensor(wl, dtype=dtype, device=dev)
    wt = torch.as_tensor(instrument.radiation.normalized_weights, dtype=dtype, device=dev)
    neutron = instrument.is_neutron

    if instrument.anomalous and not neutron:
        # f′, f″ at each wavelength, shared by lines within 2 % of one another (a Kα1/Kα2 doublet: GSAS-II too
        # takes them at the primary wavelength)
        by_line: dict[float, Tensor] = {}
        columns = []
        for w in wl:
            line = next((k for k in by_line if abs(k - w) <= 0.02 * k), w)
            if line not in by_line:
                by_line[line] = friedel_mean_f_squared_flat(
                    crystals, hkl_flat, cidx, s2, wavelength=line, table=instrument.form_factors
                )
            columns.append(by_line[line])
        f_squared = torch.stack(columns, dim=-1)
    else:
        re, im = structure_factor_flat(
            crystals, hkl_flat, cidx, s2, table=instrument.form_factors, neutron=neutron
        )
        f_squared = (re * re + im * im)[:, None].expand(-1, len(wl))
    # a half-sphere list: each listed reflection stands for a Friedel pair (times its equivalents when merged)
    mult = 2.0 * hmask.reshape(-1).index_select(0, flat).to(dtype) if merged else torch.full_like(d, 2.0)
    sin_t = lam[None, :] * (0.5 * torch.sqrt(g2))[:, None]  # λ/(2d), (T,L)
    valid = sin_t < 1.0
    sin_safe = torch.where(valid, sin_t, torch.full_like(sin_t, 0.5))
    two_theta_rad = 2.0 * torch.asin(sin_safe)
    lp = lorentz_polarisation(
        two_theta_rad, instrument.polarisation, instrument.monochromator_two_theta, neutron=neutron
    )
    ratio = torch.ones(bsz, dtype=dtype, device=dev) if profile is None else profile.po_ratio
    if _is_fixed_at(ratio, 1.0):  # March–Dollase at r = 1 is 1 with zero derivatives: nothing to compute
        po = torch.ones_like(d)
    elif merged:
        raise RefineError(
            "preferred orientation needs the full reflection list: symmetry-merged reflections (integer counts "
            "in the hkl mask) do not say which direction each equivalent points in"
        )
    else:
        axis = torch.as_tensor(instrument.po_axis, dtype=dtype, device=dev)
        axis_vec = axis @ reciprocal_lattice(crystals.lattice)  # (B,3)
        an = axis_vec / torch.linalg.norm(axis_vec, dim=-1, keepdim=True)
        c2 = ((g * an.index_select(0, cidx)).sum(-1) / torch.sqrt(g2)) ** 2  # cos² of the angle to the axis
        r_t = ratio.index_select(0, cidx)
        po = (r_t * r_t * c2 + (1.0 - c2) / r_t) ** -1.5  # March–Dollase, as :func:`march_dollase`
    weight = mult * po
    if profile is not None:
        weight = weight * profile.scale.index_select(0, cidx)
    intensity = weight[:, None] * f_squared * lp * wt[None, :]
    intensity = torch.where(valid, intensity, torch.zeros_like(intensity))
    return FlatReflections(
        crystal=cidx,
        row=row,
        hkl=hkl_flat,
        d=d,
        multiplicity=mult,
        f_squared=f_squared,
        two_theta=torch.rad2deg(two_theta_rad),
        lp=lp,
        po=po,
        intensity=intensity,
        valid=valid,
    )


def bragg_intensities(
    crystals: CrystalBatch,
    instrument: Instrument,
    profile: ProfileParams | None = None,
    hkl: tuple[Tensor, Tensor] | None = None,
    two_theta_max: float = 90.0,
) -> ReflectionData:
    """|F|², multiplicity, LP, PO and integrated intensity per reflection and wavelength (padded (B,R,…)).

    ``hkl`` from :func:`generate_hkl` (half sphere), or merged by symmetry
    (:func:`refine.physics.equivalents.merge_equivalent_reflections`); generated for
    ``two_theta_max`` (degrees) when None. ``profile`` supplies scale and po_ratio (defaults 1).
    """
    if not instrument.is_neutron:
        check_species(crystals.species, crystals.mask, instrument.form_factors)
    if hkl is None:
        hkl = default_hkl(crystals, instrument, two_theta_max)
    fr = flat_reflections(crystals, instrument, profile, hkl)
    return _padded(fr, hkl, instrument)


def _padded(fr: FlatReflections, hkl: tuple[Tensor, Tensor], instrument: Instrument) -> ReflectionData:
    """Scatter a flat reflection list back to the padded (B,R,…) layout of ``hkl``.

    Padding (and reflections beyond 2θ = 180°) carry 2θ = 60° and its LP, as a placeholder; their intensity is 0.
    """
    hkl_t, hmask = hkl
    bsz, r = hmask.shape
    flat = fr.crystal * r + fr.row

    def pad(t: Tensor, fill: float = 0.0) -> Tensor:
        out = torch.full((bsz * r, *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
        return out.index_put((flat,), t).view(bsz, r, *t.shape[1:])

    lp_fill = lorentz_polarisation(
        torch.tensor(math.radians(60.0), dtype=torch.float64),
        instrument.polarisation,
        instrument.monochromator_two_theta,
        neutron=instrument.is_neutron,
    ).item()
    return ReflectionData(
        hkl=hkl_t,
        mask=hmask,
        d=pad(fr.d),
        multiplicity=pad(fr.multiplicity),
        f_squared=pad(fr.f_squared),
        two_theta=pad(fr.two_theta, 60.0),
        lp=pad(fr.lp, lp_fill),
        po=pad(fr.po),
        intensity=pad(fr.intensity),
        valid=pad(fr.valid.to(torch.uint8)).to(torch.bool),
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
    disp = profile.displacement.index_select(0, bidx)
    if instrument.geometry is Geometry.DEBYE_SCHERRER:
        shift = -const * disp * torch.cos(tt)
    else:
        shift = -const * 4.0 * disp * torch.cos(0.5 * tt)
    return profile.zero.index_select(0, bidx) + shift


def fcj_split(
    bragg: Tensor, bidx: Tensor, theta: Tensor, fwhm: Tensor, profile: ProfileParams, instrument: Instrument
) -> tuple[Tensor, Tensor, Tensor]:
    """FCJ sub-peaks (parent, offsets °, weights) of merged reflections at Bragg 2θ ``bragg`` (degrees; θ in
    radians, FWHM in degrees, crystal index ``bidx``) with the instrument's quadrature rule; the Lorentzian
    width is evaluated only for the "gsas2" rule, the one that needs it."""
    quadrature = instrument.fcj_quadrature
    gamma = lorentz_fwhm(theta, profile.X[bidx], profile.Y[bidx]) if quadrature == "gsas2" else None
    return axial_subpeaks(bragg, profile.asym[bidx], fwhm, gamma, quadrature)


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
    if key.device.type == "cpu":
        # numpy's stable sort is linear on the nearly sorted keys ``simulate`` passes
        order = torch.from_numpy(np.argsort(key.numpy(), kind="stable"))
        uniq, inv_sorted = torch.unique_consecutive(key.index_select(0, order), return_inverse=True)
        inv = torch.empty_like(inv_sorted).index_put_((order,), inv_sorted)
    else:
        uniq, inv = torch.unique(key, return_inverse=True)
    g = uniq.shape[0]
    w = intensity + torch.finfo(intensity.dtype).tiny * 1e6
    area = intensity.new_zeros(g).index_add(0, inv, intensity)
    wsum = w.new_zeros(g).index_add(0, inv, w)
    tt = two_theta.new_zeros(g).index_add(0, inv, w * two_theta) / wsum
    b = torch.zeros(g, dtype=bidx.dtype, device=bidx.device).scatter(0, inv, bidx)
    return b, tt, area


def _by_wavelength(valid: Tensor) -> Tensor:
    """Flat indices t·L + l of the valid (T,L) entries, ordered by wavelength, then reflection.

    Each wavelength's run keeps the reflections' order (by crystal, then increasing |g|), so the keys of
    :func:`merge_coincident` come as L sorted runs, which its stable sort merges in linear time.
    """
    n_t, n_l = valid.shape
    s = torch.nonzero(valid.t().reshape(-1)).squeeze(1)  # l·T + t
    lidx = torch.div(s, n_t, rounding_mode="floor")
    return (s - lidx * n_t) * n_l + lidx


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
    little), or merged by symmetry (:mod:`refine.physics.equivalents`); generated for the grid's 2θ max + 2°
    when None. With ``per_reflection`` returns ``(pattern, ReflectionData)``.
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
    if not instrument.is_neutron:
        check_species(crystals.species, crystals.mask, instrument.form_factors)
    if hkl is None:
        hkl = default_hkl(crystals, instrument, float(grid[-1]))
    fr = flat_reflections(crystals, instrument, profile, hkl)
    n_wl = fr.two_theta.shape[-1]
    sel = _by_wavelength(fr.valid)
    bidx = fr.crystal.index_select(0, torch.div(sel, n_wl, rounding_mode="floor"))
    lidx = sel % n_wl
    bidx, bragg, area = merge_coincident(
        bidx,
        lidx,
        fr.two_theta.reshape(-1).index_select(0, sel),
        fr.intensity.reshape(-1).index_select(0, sel),
    )
    centre = bragg + _peak_shift_flat(bragg, bidx, profile, instrument)
    theta = torch.deg2rad(0.5 * bragg)
    fwhm, eta = tch_widths(
        theta, *(t.index_select(0, bidx) for t in (profile.U, profile.V, profile.W, profile.X, profile.Y))
    )
    if bool((profile.asym > 0).any()):
        parent, off, w = fcj_split(bragg, bidx, theta, fwhm, profile, instrument)
        centre = centre[parent] + off
        area = area[parent] * w
        fwhm, eta, bidx = fwhm[parent], eta[parent], bidx[parent]
    pattern = render_peaks(grid, bidx, centre, area, fwhm, eta, bsz, instrument.window_fwhm)
    pattern = chebyshev_background(grid, profile.background, profile.inv_two_theta, base=pattern)
    if per_reflection:
        return pattern, _padded(fr, hkl, instrument)
    return pattern
