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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse
import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from .lm import stacked_unit_tangents
from .physics import bragg_intensities, tch_widths
from .physics.background import chebyshev_basis
from .physics.forward import _peak_shift_flat, fcj_split, merge_coincident
from .physics.profile import ragged_windows, window_layout

if TYPE_CHECKING:
    from .rietveld import RietveldModel

log = logging.getLogger(__name__)
_LN2 = math.log(2.0)
_GNORM = math.sqrt(_LN2 / math.pi)
#: Most window values per block of the shape-derivative matrix (:func:`_shape_columns`): 2²³ values take
#: 256 MiB with their four derivatives, whatever the number of peaks × window points of the batch.
MAX_SHAPE_VALUES = 2**23


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
        parent, off, w = fcj_split(bragg, bidx, th, fwhm, profile, model.instrument)
        order = torch.argsort(parent, stable=True)
        parent, off, w = parent[order], off[order], w[order]
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


def _shape_values(
    u: Tensor,
    hg: Tensor,
    area: Tensor,
    eta: Tensor,
    out: Tensor,
    gauss_cols: tuple[int, int] | None = None,
) -> Tensor:
    """∂y/∂A, ∂y/∂c, ∂y/∂Γ, ∂y/∂η of pseudo-Voigt peaks at reduced offsets u = 2(2θ − c)/Γ, written to
    ``out`` (4, *u.shape) and returned.

    ``u`` is (P,K) (one row of window points per peak) or flat (nnz,); hg = 2/Γ (1/°), area and η broadcast
    against ``u``. With ``gauss_cols`` = (c0, c1) the Gaussian part is evaluated on those columns only (as the
    renderer does: beyond 4 FWHM it is below float64 resolution). With L = 1/(1 + u²), G = exp(−ln2 u²):
    pV = e·hg/π·L + (1 − e)·√(ln2/π)·hg·G.
    """
    d_area, d_centre, d_fwhm, d_eta = out.unbind(0)
    z = u * u
    lor = (1.0 + z).reciprocal_()
    c_l = eta * hg / math.pi  # Lorentzian amplitude e·hg/π
    a_l = area * c_l
    hg_a = area * hg
    torch.mul(lor, c_l, out=d_area)
    torch.mul(lor, hg_a / math.pi, out=d_eta)
    lor.square_()
    torch.mul(u, 2.0 * hg * a_l, out=d_centre).mul_(lor)
    torch.sub(z, 1.0, out=d_fwhm).mul_(lor).mul_(0.5 * hg * a_l)
    sl = (Ellipsis,) if gauss_cols is None else (Ellipsis, slice(*gauss_cols))
    zg = z[sl]
    gau = torch.mul(zg, -_LN2).exp_()
    c_g = (1.0 - eta) * _GNORM * hg  # Gaussian amplitude (1 − e)·√(ln2/π)·hg
    a_g = area * c_g
    d_area[sl].addcmul_(gau, c_g)
    d_eta[sl].addcmul_(gau, _GNORM * hg_a, value=-1.0)
    gau.mul_(a_g * hg)
    d_centre[sl].addcmul_(u[sl], gau, value=2.0 * _LN2)
    d_fwhm[sl].addcmul_(gau, zg.mul(_LN2).sub_(0.5))
    return out


def _shape_columns(
    grid: Tensor, n_batch: int, peaks: tuple[Tensor, Tensor, Tensor, Tensor, Tensor], window: float
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Compressed-sparse-column data of the shape-derivative matrix (B·M × 4·N'), in blocks of about
    :data:`MAX_SHAPE_VALUES` values each: per block, values (4, nnz), row indices (nnz,) and points per
    column (N_b,) of one quantity's block (the four blocks share them), and the peak behind each column
    (N_b,) — peaks outside the grid are left out.

    Column q·N_b + j holds ∂y/∂(A, c, Γ, η)_q of peak ``peak[j]`` over its window (a contiguous run of grid
    points). On a uniform grid the renderer's own bucketed windows are used (dense (P_b, K) blocks, no
    per-point gathers; points past the grid's ends get value 0), else ±window·Γ/2 (one block)."""
    bidx, centre, area, fwhm, eta = peaks
    m = grid.shape[0]
    layout = window_layout(grid, bidx, centre, fwhm, n_batch, window)
    if layout is None:
        pk, gi, counts = ragged_windows(grid, centre, fwhm, window)
        hg = 2.0 / fwhm[pk]
        values = grid.new_empty(4, pk.shape[0])
        _shape_values((grid[gi] - centre[pk]) * hg, hg, area[pk], eta[pk], values)
        yield values, bidx[pk] * m + gi, counts, torch.arange(centre.shape[0])
        return
    kept = torch.arange(centre.shape[0]) if layout.inside is None else layout.inside
    bidx, centre, area, fwhm, eta = (t.index_select(0, kept) for t in (bidx, centre, area, fwhm, eta))
    step = layout.plan.step
    x0 = (grid[0] + layout.start.to(grid.dtype) * step) - centre
    hg_all = 2.0 / fwhm
    groups: list[list[Any]] = [[]]
    total = 0
    for b in layout.plan.buckets:  # consecutive buckets, at most MAX_SHAPE_VALUES values per block
        n = b.index.shape[0] * b.size
        if groups[-1] and total + n > MAX_SHAPE_VALUES:
            groups.append([])
            total = 0
        groups[-1].append(b)
        total += n
    for buckets in groups:
        if not buckets:
            continue
        n_vals = [b.index.shape[0] * b.size for b in buckets]
        values = grid.new_empty(4, sum(n_vals))
        rows = torch.empty(sum(n_vals), dtype=torch.int64)
        order, sizes, at = [], [], 0
        for b, n in zip(buckets, n_vals, strict=True):
            i, size = b.index, b.size
            block = values[:, at : at + n].view(4, i.shape[0], size)
            hg = hg_all.index_select(0, i)[:, None]
            u = (torch.arange(size, dtype=grid.dtype) * step + x0.index_select(0, i)[:, None]).mul_(hg)
            _shape_values(
                u, hg, area.index_select(0, i)[:, None], eta.index_select(0, i)[:, None], block, b.gauss
            )
            start = layout.start.index_select(0, i)
            gi = start[:, None] + torch.arange(size)
            edge = torch.nonzero((start < 0) | (start + size > m)).squeeze(1)
            # windows running past the grid's ends: zero those points, keep the rows in range
            if edge.numel():
                ge = gi.index_select(0, edge)
                outside = (ge < 0) | (ge >= m)
                block[:, edge] = block[:, edge].masked_fill(outside, 0.0)
                gi[edge] = ge.clamp(0, m - 1)
            torch.add(gi, bidx.index_select(0, i)[:, None] * m, out=rows[at : at + n].view(i.shape[0], size))
            order.append(i)
            sizes.append(torch.full((i.shape[0],), size, dtype=torch.int64))
            at += n
        yield values, rows, torch.cat(sizes), kept[torch.cat(order)]


def _shape_product(
    grid: Tensor,
    n_batch: int,
    peaks: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    window: float,
    tangents: Tensor,
) -> Tensor:
    """(B·M, P) = Σ_j ∂y/∂(A, c, Γ, η)_j · tangents (4·N, P) (rows q·N + j), as sparse products.

    The shape-derivative matrix (B·M × 4·N) is assembled in compressed-sparse-column form, a block of
    columns at a time (each peak's window is a contiguous run of grid points; see :func:`_shape_columns`),
    and multiplied by scipy (≈ 4× faster than torch's CPU sparse CSR product here); the blocks' products
    add up. Values are detached: this is a Jacobian, not differentiated."""
    peaks = tuple(t.detach() for t in peaks)  # type: ignore[assignment]
    n_pk = peaks[1].shape[0]
    n_rows = n_batch * grid.shape[0]
    tangents = tangents.detach().view(4, n_pk, -1)
    product: np.ndarray | None = None
    for values, rows, counts, peak in _shape_columns(grid, n_batch, peaks, window):
        n_cols = peak.shape[0]
        if n_cols == 0:
            continue
        tan = tangents.index_select(1, peak).reshape(4 * n_cols, -1)
        index_dtype = np.int32 if max(n_rows, 4 * values.shape[1]) < 2**31 else np.int64
        rows_np = np.tile(rows.numpy().astype(index_dtype), 4)  # the four column blocks share their rows
        per_column = np.tile(counts.numpy().astype(index_dtype), 4)
        indptr_np = np.concatenate([np.zeros(1, index_dtype), np.cumsum(per_column, dtype=index_dtype)])
        shape_matrix = scipy.sparse.csc_matrix(
            (values.reshape(-1).numpy(), rows_np, indptr_np), shape=(n_rows, 4 * n_cols)
        )
        part = shape_matrix @ tan.numpy()
        product = part if product is None else product + part
    if product is None:
        return grid.new_zeros(n_rows, tangents.shape[2])
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
#: The self-check costs one calculated pattern: it runs on the first Jacobian of each configuration (instrument,
#: annealing width, asymmetric or not, columns) and then on every SELF_CHECK_EVERY-th call of that configuration.
SELF_CHECK_EVERY = 8
#: Reflections × atoms per stacked forward-mode pass (bounds its memory, ≈ 16 MB per intermediate tensor).
STACK_BUDGET = 2_000_000

_warned: set[str] = set()


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Maximal runs [start, stop) of consecutive integers in an increasing list."""
    runs: list[tuple[int, int]] = []
    for i in positions:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


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
    jac = theta.new_empty(bsz, m, len(col_list))
    neg_ws = -ws[:, :, None]
    bg_pos = [i for i, c in enumerate(col_list) if c in bg]
    if bg_pos:
        basis = chebyshev_basis(grid, lay.n_background)  # (K,M)
        for lo, hi in _runs(bg_pos):  # the background columns are consecutive parameters
            k0 = col_list[lo] - lay.bg_slice.start
            torch.mul(neg_ws, basis[k0 : k0 + hi - lo].T, out=jac[:, :, lo:hi])
    pk_pos = [i for i, c in enumerate(col_list) if c not in bg]
    pk_cols = [col_list[i] for i in pk_pos]
    if pk_cols:
        theta = theta.detach()
        asymmetric = bool((theta[:, lay.global_index("asym")] > 0).any())
        config = (id(model.instrument), model.extra_w, asymmetric, tuple(pk_cols))
        n_calls = model.jacobian_calls.get(config, 0)
        model.jacobian_calls[config] = n_calls + 1
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
            # stacked forward-mode passes cost ~ rows × reflections × atoms: small problems stack many more
            # rows than max_rows, large ones fewer (down to one column), so memory stays bounded
            per_row = max(1, (n_refl // max(bsz, 1) + 1) * int(model.stacked[k].mask.shape[1]))
            stack_rows = max(1, STACK_BUDGET // per_row)
            # integrated intensities are proportional to the phase scale and Bragg angles do not depend on it:
            # its column needs no forward-mode pass (unless a scale is 0)
            scale_col = lay.phase_profile_index(k, "scale")
            scale = theta[:, scale_col]
            linear_scale = scale_col in refl_cols and bool((scale != 0).all())
            ad_cols = [c for c in refl_cols if not (linear_scale and c == scale_col)]
            rt = _reflection_tangents(model, theta, k, ad_cols, n_refl, stack_rows, rows)
            if rt is not None and linear_scale:
                rt[1][:, scale_col] = refl[2] / scale[refl[0]]
            tan = None if rt is None else _peak_tangents(model, theta, k, pk_cols, refl, rt, n_pk, stack_rows)
            if tan is None:
                return _fallback(model, theta, columns, rows, max_rows, "peak lists do not line up", compact)
            tan = torch.cat([tan[:, pk_cols], theta.new_zeros(4 * n_pk, 1)], dim=1)
            tan[:n_pk, -1] = peaks[2]  # Σ_j pV_j A_j: the phase's pattern, for the self-check
            prod = _shape_product(grid, bsz, peaks, model.instrument.window_fwhm, tan)
            acc = prod[:, :-1] if acc is None else acc + prod[:, :-1]
            calc = calc + prod[:, -1]
        if n_calls % SELF_CHECK_EVERY == 0:
            with torch.no_grad():
                ref = torch.stack(model.phase_patterns(theta, index)).sum(dim=0).reshape(-1)
            mismatch = float((calc - ref).abs().max() / ref.abs().max().clamp_min(1e-300))
            if not mismatch <= SELF_CHECK_RTOL:
                why = f"peak shapes differ from the model by {mismatch:.1e}"
                return _fallback(model, theta, columns, rows, max_rows, why, compact)
        src = acc.view(bsz, m, len(pk_cols)) if acc is not None else None
        at = 0
        for lo, hi in _runs(pk_pos):  # written in place, run by run of consecutive columns
            if src is None:
                jac[:, :, lo:hi] = 0.0
            else:
                torch.mul(src[:, :, at : at + hi - lo], neg_ws, out=jac[:, :, lo:hi])
            at += hi - lo
    if compact:
        return jac
    full = theta.new_zeros(bsz, m, p)
    full[:, :, cols] = jac
    return full


__all__ = ["model_jacobian", "peak_list"]
