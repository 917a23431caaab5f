"""Successive dichotomy (DICVOL-style) over the linear reciprocal-metric parameters of one crystal system.

A box of parameters survives a level when every observed line (but at most ``max_unindexed``) falls,
within its tolerance, inside the exact 1/d² range that some hkl spans over the box. Surviving boxes are
halved along every parameter until their widths reach the requested resolution. Boxes are handled in
chunks as (boxes × lines × hkl) boolean arrays, so there is no Python loop over reflections.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .systems import FloatArray, IntArray, SystemModel, box_bounds

log = logging.getLogger(__name__)

#: Upper bound on the boolean work array (boxes × lines × hkl) of one chunk.
_CHUNK_ELEMENTS = 3_000_000


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of one dichotomy search: cell edges (Å), a volume shell (Å³) and the tolerance."""

    a_min: float
    a_max: float
    v_min: float
    v_max: float


class BoxLimitExceeded(RuntimeError):
    """The number of surviving boxes grew beyond the configured limit (search too ambiguous)."""


def dichotomy(
    model: SystemModel,
    q_obs: FloatArray,
    q_tol: FloatArray,
    space: SearchSpace,
    *,
    max_unindexed: int = 0,
    initial_divisions: int = 8,
    resolution: float | None = None,
    max_boxes: int = 2_000_000,
    deadline: float | None = None,
    grad: FloatArray | None = None,
    zero_max: float = 0.0,
    zero_width: float = 0.03,
) -> tuple[FloatArray, FloatArray]:
    """Centres of the finest boxes that index the lines ``q_obs`` (1/d², Å⁻²) within ``q_tol``:
    parameters (M, P) and zero shifts (M,) in degrees 2θ.

    When ``zero_max`` > 0 the zero shift z (2θ_true = 2θ_obs − z) is one more box dimension in
    [−zero_max, zero_max], halved down to ``zero_width``; ``grad`` (N,) is d(1/d²)/d2θ per degree of each
    line. ``resolution`` is the final width of the boxes in log(1/d²) (default: the median relative
    tolerance of the lines). Raises :class:`BoxLimitExceeded` if the search
    explodes and ``TimeoutError`` past ``deadline`` (a ``time.monotonic`` value).
    """
    lo0, hi0 = model.u_ranges(space.a_min, space.a_max)
    p = model.n_params
    n_lines = len(q_obs)
    # boxes narrower than the lines' relative tolerance only multiply: stop there and let the
    # least-squares refinement converge from the box centres
    res = resolution if resolution is not None else float(np.median(q_tol / q_obs))
    use_zero = zero_max > 0 and grad is not None
    g = np.zeros_like(q_obs) if grad is None else np.asarray(grad, dtype=np.float64)
    q_hi = float(np.max(q_obs + q_tol + zero_max * g))
    p_lo0, _ = model.box_params(lo0[None, :], hi0[None, :])
    hkl_all = model.hkl_candidates(p_lo0[0], q_hi)
    x_all = model.design(hkl_all)
    lower_x = _lower_design(model, x_all)

    if use_zero:
        lo0 = np.append(lo0, -zero_max)
        hi0 = np.append(hi0, zero_max)
    dims = len(lo0)
    target = np.full(dims, res)
    divisions = np.full(dims, initial_divisions)
    if model.name == "monoclinic":
        target[3] = res * float(np.median(q_obs)) / 4.0  # E = 2a*·c* is linear (Å⁻²)
        divisions[3] = initial_divisions
    if use_zero:
        target[-1] = zero_width
        divisions[-1] = max(1, int(np.ceil(2 * zero_max / (4 * zero_width))))
    width = (hi0 - lo0) / divisions
    grids = np.meshgrid(*[np.arange(n) for n in divisions], indexing="ij")
    idx = np.stack([gr.ravel() for gr in grids], axis=1).astype(np.int64)
    level = 0
    while True:
        u_lo = lo0 + idx * width
        u_hi = u_lo + width
        lo, hi = model.box_params(u_lo[:, :p], u_hi[:, :p])
        keep = model.feasible(lo, hi)
        vlo, vhi = model.volume_range(lo, hi)
        keep &= (vhi >= space.v_min) & (vlo <= space.v_max)
        idx, lo, hi, u_lo, u_hi = idx[keep], lo[keep], hi[keep], u_lo[keep], u_hi[keep]
        if len(idx):
            if use_zero:
                line_lo = q_obs[None, :] - u_hi[:, p : p + 1] * g[None, :] - q_tol[None, :]
                line_hi = q_obs[None, :] - u_lo[:, p : p + 1] * g[None, :] + q_tol[None, :]
            else:
                line_lo = np.broadcast_to(q_obs - q_tol, (len(idx), n_lines))
                line_hi = np.broadcast_to(q_obs + q_tol, (len(idx), n_lines))
            # cheap necessary test on the low-angle lines (few hkl reach them), then all lines
            for n_use in sorted({min(n_lines, 8), n_lines}):
                if len(idx) == 0:
                    break
                ok = _indexable(
                    x_all,
                    lower_x,
                    lo,
                    hi,
                    line_lo[:, :n_use],
                    line_hi[:, :n_use],
                    max_unindexed,
                    float(line_hi[:, n_use - 1].max()),
                    deadline,
                )
                idx, lo, hi, u_lo, u_hi = idx[ok], lo[ok], hi[ok], u_lo[ok], u_hi[ok]
                line_lo, line_hi = line_lo[ok], line_hi[ok]
        log.debug("%s level %d: %d boxes, width %s", model.name, level, len(idx), width)
        if len(idx) == 0 or np.all(width <= target):
            centre = model.u_centre(u_lo[:, :p], u_hi[:, :p])
            zeros = (u_lo[:, p] + u_hi[:, p]) / 2.0 if use_zero else np.zeros(len(centre))
            return centre, zeros
        split = width > target
        if use_zero and np.any(split[:p] & (width[:p] > 8 * target[:p])):
            split[-1] = False  # the zero shift matters only once the cell boxes are narrow
        if len(idx) * 2 ** int(split.sum()) > max_boxes:
            raise BoxLimitExceeded(f"{model.name}: {len(idx) * 2 ** int(split.sum())} boxes at level {level}")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{model.name} dichotomy past its time limit")
        width = np.where(split, width / 2.0, width)
        offsets = _children(split)
        idx = (idx * np.where(split, 2, 1)[None, :])[:, None, :] + offsets[None, :, :]
        idx = idx.reshape(-1, dims)
        level += 1


def _children(split: np.ndarray) -> IntArray:
    axes = [np.arange(2) if s else np.zeros(1, dtype=np.int64) for s in split]
    grids = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def _lower_design(model: SystemModel, x: FloatArray) -> FloatArray:
    """Matrix L with L @ p ≤ 1/d² for every admissible p (used to drop hkl per chunk)."""
    if model.name == "monoclinic":
        low = np.zeros_like(x)
        low[:, 0] = 0.5 * (x[:, 0] + x[:, 2])
        low[:, 1] = x[:, 1]
        return low
    return x


def _indexable(
    x_all: FloatArray,
    lower_x: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    line_lo: FloatArray,
    line_hi: FloatArray,
    max_unindexed: int,
    q_hi: float,
    deadline: float | None,
) -> np.ndarray:
    """Boolean mask of boxes in which all but ``max_unindexed`` lines, each a 1/d² window
    ``line_lo``–``line_hi`` (M, N), fall inside the 1/d² range of some hkl."""
    n = line_lo.shape[1]
    out = np.zeros(len(lo), dtype=bool)
    order = np.lexsort(lo.T[::-1])
    xp = np.maximum(x_all, 0.0)
    xn = np.minimum(x_all, 0.0)
    start = 0
    while start < len(order):
        # small chunks of neighbouring boxes share a short list of reachable hkl
        size = min(len(order) - start, 256)
        while True:
            sel = order[start : start + size]
            reach = xp @ lo[sel].min(axis=0) + xn @ hi[sel].max(axis=0) <= q_hi
            nh = int(reach.sum())
            if size == 1 or size * n * max(nh, 1) <= _CHUNK_ELEMENTS:
                break
            size = max(1, size // 2)
        if nh:
            qmin, qmax = box_bounds(x_all[reach], lo[sel], hi[sel])
            qmin32 = qmin.astype(np.float32)[:, None, :]
            qmax32 = qmax.astype(np.float32)[:, None, :]
            hit = np.any(
                (qmin32 <= line_hi[sel].astype(np.float32)[:, :, None])
                & (qmax32 >= line_lo[sel].astype(np.float32)[:, :, None]),
                axis=2,
            )
            out[sel] = (n - hit.sum(axis=1)) <= max_unindexed
        start += size
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("dichotomy past its time limit")
    return out
