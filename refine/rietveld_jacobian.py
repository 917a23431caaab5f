"""Fast Jacobian of the Rietveld residuals: render the peak shapes once, differentiate per peak.

The calculated pattern is ``y(2θ_i) = Σ_j A_j pV(2θ_i − c_j; Γ_j, η_j) + Σ_k c_k T_k(2θ_i)``. Every refined
parameter p other than the (linear) Chebyshev background acts only through the per-peak quantities area A_j,
centre c_j (degrees), FWHM Γ_j (degrees) and mixing η_j, so

    ∂y_i/∂p = Σ_j [pV_ij ∂A_j/∂p + A_j ∂pV_ij/∂c ∂c_j/∂p + A_j ∂pV_ij/∂Γ ∂Γ_j/∂p + A_j (L_ij − G_ij) ∂η_j/∂p].

The per-peak derivatives (N_peaks × P) come from forward-mode AD through the *reflection* part of the model
only (structure factors, LP, widths, shifts; no rendering), all parameter columns stacked in one pass; the
shape derivatives are analytic and assembled into one sparse (B·M × 4·N_peaks) matrix, multiplied once.
The background columns are exact: −w_i T_k(2θ_i). Peaks are evaluated over ±window_fwhm·Γ/2 (the renderer's
window up to its bucket padding), so columns agree with forward-mode AD of the full pattern to the tails'
truncation (≪ 1e-6 relative for the default 20 FWHM window).

Peak list construction mirrors :func:`refine.physics.forward.simulate` (merged coincident reflections,
zero/displacement shift, TCH widths, FCJ quadrature sub-peaks); ``tests/test_rietveld_jacobian.py`` checks the
two agree.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse
import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from .lm import stacked_unit_tangents
from .physics import bragg_intensities, tch_widths
from .physics.background import chebyshev_basis
from .physics.forward import FCJ_POINTS, _peak_shift_flat, merge_coincident
from .physics.profile import fcj_offsets

try:  # adaptive FCJ quadrature, when simulate uses it
    from .physics.profile import fcj_subpeaks
except ImportError:  # pragma: no cover - older forward model: fixed FCJ_POINTS nodes
    fcj_subpeaks = None  # type: ignore[assignment]

try:  # the renderer's window buckets (uniform grids): match its truncation exactly when available
    from .physics.profile import _BUCKETS, _is_uniform
except ImportError:  # pragma: no cover - renderer internals changed: fall back to ±window·FWHM/2
    _BUCKETS = None  # type: ignore[assignment]

    def _is_uniform(grid: Tensor) -> bool:
        return False


if TYPE_CHECKING:
    from .rietveld import RietveldModel

log = logging.getLogger(__name__)
_LN2 = math.log(2.0)
_GNORM = math.sqrt(_LN2 / math.pi)


def reflection_peaks(
    model: RietveldModel, theta: Tensor, k: int, index: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(batch index, Bragg 2θ °, integrated intensity) of the merged reflections of phase k, as ``simulate``."""
    crystals = model.crystals(theta, k, index)
    hkl = model.hkl[k] if index is None else (model.hkl[k][0][index], model.hkl[k][1][index])
    profile = model.profile(theta, k)
    refl = bragg_intensities(crystals, model.instrument, profile, hkl, float(model.two_theta[-1]))
    n_wl = refl.two_theta.shape[-1]
    sel = torch.nonzero(refl.valid.reshape(-1)).squeeze(1)
    bidx = torch.div(sel, refl.two_theta.shape[1] * n_wl, rounding_mode="floor")
    lidx = sel % n_wl
    return merge_coincident(bidx, lidx, refl.two_theta.reshape(-1)[sel], refl.intensity.reshape(-1)[sel])


def profile_peaks(
    model: RietveldModel, theta: Tensor, k: int, bidx: Tensor, bragg: Tensor, area: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(batch index, centre °, area, FWHM °, η, parent reflection) of every rendered (sub-)peak from merged
    reflections, ordered by parent (FCJ sub-peaks of one reflection stay in node order)."""
    profile = model.profile(theta, k)
    centre = bragg + _peak_shift_flat(bragg, bidx, profile, model.instrument)
    th = torch.deg2rad(0.5 * bragg)
    fwhm, eta = tch_widths(
        th, profile.U[bidx], profile.V[bidx], profile.W[bidx], profile.X[bidx], profile.Y[bidx]
    )
    parent = torch.arange(bragg.shape[0])
    if bragg.numel() and bool((profile.asym.detach() > 0).any()):
        if fcj_subpeaks is not None:
            parent, off, w = fcj_subpeaks(bragg, profile.asym[bidx], fwhm)
            order = torch.argsort(parent, stable=True)
            parent, off, w = parent[order], off[order], w[order]
        else:
            off, w = fcj_offsets(bragg, profile.asym[bidx], FCJ_POINTS)
            parent = parent.repeat_interleave(off.shape[-1])
            off, w = off.reshape(-1), w.reshape(-1)
        centre = centre[parent] + off
        area = area[parent] * w
        fwhm, eta, bidx = fwhm[parent], eta[parent], bidx[parent]
    return bidx, centre, area, fwhm, eta, parent


def peak_list(
    model: RietveldModel, theta: Tensor, k: int, index: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(batch index, centre °, area, FWHM °, η) of every rendered (sub-)peak of phase k, as ``simulate``."""
    bidx, bragg, area = reflection_peaks(model, theta, k, index)
    return profile_peaks(model, theta, k, bidx, bragg, area)[:5]


def _windows(grid: Tensor, centre: Tensor, fwhm: Tensor, window: float) -> tuple[Tensor, Tensor]:
    """First grid index and number of points of each peak's window — the renderer's own windows on a uniform
    grid (bucketed lengths), else ±window·FWHM/2."""
    m = grid.shape[0]
    if _BUCKETS is not None and _is_uniform(grid):
        g0 = grid[0]
        step = (grid[-1] - grid[0]) / (m - 1)
        half_pts = torch.ceil(0.5 * window * fwhm / step).to(torch.int64)
        first = torch.floor((centre - g0) / step).to(torch.int64)
        sizes = torch.as_tensor(_BUCKETS)
        bucket = torch.searchsorted(sizes, 2 * half_pts + 2).clamp(max=len(_BUCKETS) - 1)
        size = sizes[bucket]
        if bool((2 * half_pts + 2 <= size).all()):
            lo = first - (size // 2 - 1)
            hi = lo + size
            lo_c, hi_c = lo.clamp(0, m), hi.clamp(0, m)
            inside = (first + half_pts >= 0) & (first - half_pts <= m - 1)  # the renderer drops the others
            return lo_c, torch.where(inside, (hi_c - lo_c).clamp_min(0), 0)
    half = 0.5 * window * fwhm
    lo = torch.searchsorted(grid, centre - half)
    hi = torch.searchsorted(grid, centre + half, right=True)
    return lo, (hi - lo).clamp_min(0)


def _shape_product(
    grid: Tensor,
    n_batch: int,
    peaks: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    window: float,
    tangents: Tensor,
) -> Tensor:
    """(B·M, P) = Σ_j ∂y/∂(A, c, Γ, η)_j · tangents (4·N, P) (rows q·N + j), as one sparse product.

    The shape-derivative matrix (B·M × 4·N) is built column by column (each peak's window is a contiguous
    run of grid points) in compressed-sparse-column form and multiplied by scipy (no sorting; ≈ 4× faster
    than torch's CPU sparse CSR product here). Values are detached: this is a Jacobian, not differentiated."""
    bidx, centre, area, fwhm, eta = (t.detach() for t in peaks)
    m = grid.shape[0]
    n_pk = centre.shape[0]
    lo, counts = _windows(grid, centre, fwhm, window)
    pk = torch.repeat_interleave(torch.arange(n_pk), counts)
    starts = torch.cumsum(counts, 0) - counts
    gi = lo[pk] + (torch.arange(pk.shape[0]) - starts[pk])
    x = grid[gi] - centre[pk]
    g_ = fwhm[pk]
    e_ = eta[pk]
    a_ = area[pk]
    z = (2.0 * x / g_) ** 2
    gauss = (2.0 / g_) * _GNORM * torch.exp(-_LN2 * z)
    lor = (2.0 / (math.pi * g_)) / (1.0 + z)
    dz_dc = -8.0 * x / (g_ * g_)
    values = torch.cat(
        (
            e_ * lor + (1.0 - e_) * gauss,  # ∂/∂A
            -a_ * (e_ * lor / (1.0 + z) + (1.0 - e_) * _LN2 * gauss) * dz_dc,  # ∂/∂c
            a_
            * (e_ * lor * (2.0 * z / (1.0 + z) - 1.0) + (1.0 - e_) * gauss * (2.0 * _LN2 * z - 1.0))
            / g_,  # ∂/∂Γ
            a_ * (lor - gauss),  # ∂/∂η
        )
    )
    rows = (bidx[pk] * m + gi).repeat(4)
    indptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts.repeat(4), 0)])
    shape_matrix = scipy.sparse.csc_matrix(
        (values.numpy(), rows.numpy(), indptr.numpy()), shape=(n_batch * m, 4 * n_pk)
    )
    product = shape_matrix @ tangents.detach().numpy()
    return torch.from_numpy(np.ascontiguousarray(product, dtype=np.float64)).to(grid.dtype)


def _reflection_tangents(
    model: RietveldModel,
    theta: Tensor,
    k: int,
    columns: list[int],
    n_refl: int,
    max_rows: int,
    index: Tensor,
) -> tuple[Tensor, Tensor] | None:
    """(N_r, P) derivatives of the merged reflections' Bragg 2θ and intensity (stacked forward-mode AD).

    None if the stacked reflection lists do not line up with the base list."""
    p = theta.shape[1]
    d_tt = theta.new_zeros(n_refl, p)
    d_area = theta.new_zeros(n_refl, p)
    for chunk, rep, tangent in stacked_unit_tangents(theta, columns, max_rows):
        n = len(chunk)
        with fwad.dual_level():
            _, tt, area = reflection_peaks(model, fwad.make_dual(rep, tangent), k, index.repeat(n))
            t_tt = fwad.unpack_dual(tt).tangent
            t_area = fwad.unpack_dual(area).tangent
        if tt.shape[0] != n * n_refl:
            return None
        t_tt = torch.zeros_like(tt) if t_tt is None else t_tt.detach()
        t_area = torch.zeros_like(area) if t_area is None else t_area.detach()
        for j, c in enumerate(chunk):
            d_tt[:, c] = t_tt[j * n_refl : (j + 1) * n_refl]
            d_area[:, c] = t_area[j * n_refl : (j + 1) * n_refl]
    return d_tt, d_area


def _peak_tangents(
    model: RietveldModel,
    theta: Tensor,
    k: int,
    columns: list[int],
    reflections: tuple[Tensor, Tensor, Tensor],
    reflection_tangents: tuple[Tensor, Tensor],
    n_pk: int,
    max_rows: int,
) -> Tensor | None:
    """(4·N, P) derivatives of (A, c, Γ, η) per rendered peak through the profile part, seeded with the
    reflections' own tangents: the reflection list is stacked once per column (candidates j·B + b) in one
    forward-mode pass per chunk. None if a peak list does not line up."""
    bsz, p = theta.shape
    out = theta.new_zeros(4 * n_pk, p)
    bidx, tt, area = reflections
    d_tt, d_area = reflection_tangents
    n_r = tt.shape[0]
    for chunk, rep, tangent in stacked_unit_tangents(theta, columns, max_rows):
        n = len(chunk)
        shift = (torch.arange(n) * bsz).repeat_interleave(n_r)
        with fwad.dual_level():
            dual = fwad.make_dual(rep, tangent)
            tt_d = fwad.make_dual(tt.repeat(n), d_tt[:, chunk].T.reshape(-1).contiguous())
            area_d = fwad.make_dual(area.repeat(n), d_area[:, chunk].T.reshape(-1).contiguous())
            _, centre, a_pk, fwhm, eta, _ = profile_peaks(
                model, dual, k, bidx.repeat(n) + shift, tt_d, area_d
            )
            if centre.shape[0] != n * n_pk:
                return None
            tans = []
            for q in (a_pk, centre, fwhm, eta):  # the shape matrix's column blocks
                t = fwad.unpack_dual(q).tangent
                tans.append(torch.zeros_like(q) if t is None else t.detach())
        stacked = torch.stack([t.view(n, n_pk) for t in tans], dim=1)  # (n,4,N)
        for j, c in enumerate(chunk):
            out[:, c] = stacked[j].reshape(-1)
    return out


#: Global parameters that act only on peak positions and shapes (not on Bragg angles or intensities).
PROFILE_ONLY = ("zero", "displacement", "U", "V", "W", "asym")
PHASE_PROFILE_ONLY = ("X", "Y")
#: Relative mismatch between Σ A·pV (this module) and the model's pattern above which the AD Jacobian is used.
SELF_CHECK_RTOL = 1e-7
#: Reflections × atoms per stacked forward-mode pass (bounds its memory, ≈ 16 MB per intermediate tensor).
STACK_BUDGET = 2_000_000

_warned: set[str] = set()


def _fallback(
    model: RietveldModel,
    theta: Tensor,
    columns: Tensor | None,
    rows: Tensor,
    max_rows: int,
    why: str,
    compact: bool = False,
) -> Tensor:
    from .lm import jacobian as ad_jacobian

    key = why.split(" by ")[0]
    if key not in _warned:
        _warned.add(key)
        log.warning("Rietveld Jacobian: %s; using forward-mode AD of the full pattern (slower)", why)

    def residuals(th: Tensor, idx: Tensor | None = None) -> Tensor:
        return model.residuals(th, rows if idx is None else rows[idx])

    jac = ad_jacobian(residuals, theta, columns, "batched", max_rows)
    return jac[:, :, torch.nonzero(columns).flatten()] if compact and columns is not None else jac


def model_jacobian(
    model: RietveldModel,
    theta: Tensor,
    columns: Tensor | None = None,
    index: Tensor | None = None,
    max_rows: int = 256,
    compact: bool = False,
) -> Tensor:
    """(B',M,P) Jacobian of ``model.residuals`` w.r.t. theta (B',P); ``columns`` (P,) bool limits the work;
    ``index`` (B',) names the candidate of each row (default: all candidates in order). With ``compact`` only
    the requested columns are returned, (B',M,C) in column order (what :func:`refine.lm.levenberg_marquardt`
    expects from its ``jacobian_fn``).

    Falls back to stacked forward-mode AD of the full pattern if the peak lists cannot be aligned.
    """
    bsz, p = theta.shape
    grid = model.two_theta
    m = grid.shape[0]
    cols = torch.arange(p) if columns is None else torch.nonzero(columns).flatten()
    col_list = cols.tolist()
    lay = model.layout
    bg = set(range(lay.bg_slice.start, lay.bg_slice.stop))
    rows = torch.arange(bsz) if index is None else index
    ws = model.weight_sqrt[rows] if model.weight_sqrt.ndim == 2 else model.weight_sqrt.expand(bsz, m)
    jac = theta.new_zeros(bsz, m, len(col_list))
    bg_pos = [i for i, c in enumerate(col_list) if c in bg]
    if bg_pos:
        basis = chebyshev_basis(grid, lay.n_background)  # (K,M)
        for i in bg_pos:
            jac[:, :, i] = -ws * basis[col_list[i] - lay.bg_slice.start]
    pk_pos = [i for i, c in enumerate(col_list) if c not in bg]
    pk_cols = [col_list[i] for i in pk_pos]
    if pk_cols:
        theta = theta.detach()
        acc: Tensor | None = None
        calc = theta.new_zeros(bsz * m)
        for k in range(model.n_phases):
            with torch.no_grad():
                refl = reflection_peaks(model, theta, k, index)
                peaks = profile_peaks(model, theta, k, *refl)[:5]
            prof = {lay.global_index(n) for n in PROFILE_ONLY}
            prof |= {lay.phase_profile_index(k, n) for n in PHASE_PROFILE_ONLY}
            n_refl, n_pk = refl[0].shape[0], peaks[0].shape[0]
            if n_pk == 0:  # no reflection of this phase for these candidates: no contribution
                continue
            refl_cols = [c for c in pk_cols if c not in prof]
            # stacked forward-mode passes cost ~ rows × reflections × atoms: small problems stack many more rows
            per_row = max(1, (n_refl // max(bsz, 1) + 1) * int(model.stacked[k].mask.shape[1]))
            stack_rows = max(max_rows, STACK_BUDGET // per_row)
            rt = _reflection_tangents(model, theta, k, refl_cols, n_refl, stack_rows, rows)
            tan = None if rt is None else _peak_tangents(model, theta, k, pk_cols, refl, rt, n_pk, stack_rows)
            if tan is None:
                return _fallback(model, theta, columns, rows, max_rows, "peak lists do not line up", compact)
            tan = torch.cat([tan[:, pk_cols], theta.new_zeros(4 * n_pk, 1)], dim=1)
            tan[:n_pk, -1] = peaks[2]  # Σ_j pV_j A_j: the phase's pattern, for the self-check
            prod = _shape_product(grid, bsz, peaks, model.instrument.window_fwhm, tan)
            acc = prod[:, :-1] if acc is None else acc + prod[:, :-1]
            calc = calc + prod[:, -1]
        with torch.no_grad():
            ref = torch.stack(model.phase_patterns(theta, index)).sum(dim=0).reshape(-1)
        mismatch = float((calc - ref).abs().max() / ref.abs().max().clamp_min(1e-300))
        if not mismatch <= SELF_CHECK_RTOL:
            why = f"peak shapes differ from the model by {mismatch:.1e}"
            return _fallback(model, theta, columns, rows, max_rows, why, compact)
        if acc is not None:
            jac[:, :, pk_pos] = acc.view(bsz, m, len(pk_cols)) * (-ws[:, :, None])
    if compact:
        return jac
    full = theta.new_zeros(bsz, m, p)
    full[:, :, cols] = jac
    return full


__all__ = ["model_jacobian", "peak_list"]
