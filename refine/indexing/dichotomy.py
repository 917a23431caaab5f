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

from .systems import FloatArray, IntArray, SystemModel

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
    line. ``resolution`` is the final width of the parameter boxes in 1/d² units (default: the smallest
    tolerance divided by the number of parameters). Raises :class:`BoxLimitExceeded` if the search
    explodes and ``TimeoutError`` past ``deadline`` (a ``time.monotonic`` value).
    """
    lo0, hi0 = model.ranges(space.a_min, space.a_max)
    p = model.n_params
    res = resolution if resolution is not None else float(np.min(q_tol)) / p
    n_lines = len(q_obs)
    use_zero = zero_max > 0 and grad is not None
    g = np.zeros_like(q_obs) if grad is None else np.asarray(grad, dtype=np.float64)
    q_hi = float(np.max(q_obs + q_tol + zero_max * g))
    hkl_all = model.hkl_candidates(lo0, q_hi)
    x_all = model.design(hkl_all)
    lower_x = _lower_design(model, x_all)

    if use_zero:
        lo0 = np.append(lo0, -zero_max)
        hi0 = np.append(hi0, zero_max)
    dims = len(lo0)
    target = np.full(dims, res)
    divisions = np.full(dims, initial_divisions)
    if use_zero:
        target[-1] = zero_width
        divisions[-1] = max(1, int(np.ceil(2 * zero_max / (4 * zero_width))))
    width = (hi0 - lo0) / divisions
    grids = np.meshgrid(*[np.arange(n) for n in divisions], indexing="ij")
    idx = np.stack([gr.ravel() for gr in grids], axis=1).astype(np.int64)
    level = 0
    while True:
        lo = lo0 + idx * width
        hi = lo + width
        keep = model.feasible(lo[:, :p], hi[:, :p])
        vlo, vhi = model.volume_range(lo[:, :p], hi[:, :p])
        keep &= (vhi >= space.v_min) & (vlo <= space.v_max)
        idx, lo, hi = idx[keep], lo[keep], hi[keep]
        if len(idx):
            if use_zero:
                line_lo = q_obs[None, :] - hi[:, p : p + 1] * g[None, :] - q_tol[None, :]
                line_hi = q_obs[None, :] - lo[:, p : p + 1] * g[None, :] + q_tol[None, :]
            else:
                line_lo = np.broadcast_to(q_obs - q_tol, (len(idx), len(q_obs)))
                line_hi = np.broadcast_to(q_obs + q_tol, (len(idx), len(q_obs)))
            # cheap necessary test on the low-angle lines (few hkl reach them), then all lines
            for n_use in sorted({min(n_lines, 8), n_lines}):
                if len(idx) == 0:
                    break
                ok = _indexable(
                    x_all,
                    lower_x,
                    lo[:, :p],
                    hi[:, :p],
                    line_lo[:, :n_use],
                    line_hi[:, :n_use],
                    max_unindexed,
                    float(line_hi[:, n_use - 1].max()),
                    deadline,
                )
                idx, lo, hi = idx[ok], lo[ok], hi[ok]
                line_lo, line_hi = line_lo[ok], line_hi[ok]
        log.debug("%s level %d: %d boxes, width %s", model.name, level, len(idx), width)
        if len(idx) == 0 or np.all(width <= target):
            centre = (lo + hi) / 2.0
            zeros = centre[:, p] if use_zero else np.zeros(len(centre))
            return centre[:, :p], zeros
        split = width > target
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
    start = 0
    while start < len(order):
        # grow the chunk while the hkl union stays affordable
        size = min(len(order) - start, 4096)
        while True:
            sel = order[start : start + size]
            lo_min = lo[sel].min(axis=0)
            hmask = lower_x @ lo_min <= q_hi
            nh = int(hmask.sum())
            if size == 1 or size * n * max(nh, 1) <= _CHUNK_ELEMENTS:
                break
            size = max(1, size // 2)
        if nh:
            x = x_all[hmask]
            # all boxes of a level share one width: qmax = qmin + |X| @ width
            width = hi[sel[0]] - lo[sel[0]]
            qmin = lo[sel] @ x.T + np.minimum(x, 0.0) @ width
            qmax = qmin + np.abs(x) @ width
            hit = np.any(
                (qmin[:, None, :] <= line_hi[sel][:, :, None])
                & (qmax[:, None, :] >= line_lo[sel][:, :, None]),
                axis=2,
            )
            out[sel] = (n - hit.sum(axis=1)) <= max_unindexed
        start += size
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("dichotomy past its time limit")
    return out
