"""Least-squares refinement of trial cells (and the zero shift) against indexed lines, batched over trials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .observations import d_inv_d2, inv_d2, two_theta_from_inv_d2
from .systems import FloatArray, IntArray, SystemModel

_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class RefinedTrials:
    """Refined parameters of M trial cells against N lines.

    ``params`` (M, P) reciprocal-metric parameters (Å⁻²), ``zero`` (M,) zero shift in degrees 2θ with
    2θ_true = 2θ_obs − zero, ``hkl`` (M, N, 3) the assignment, ``residual`` (M, N) 2θ_obs − zero − 2θ_calc
    (degrees).
    """

    params: FloatArray
    zero: FloatArray
    hkl: IntArray
    residual: FloatArray


def refine_trials(
    model: SystemModel,
    params: FloatArray,
    two_theta: FloatArray,
    wavelength: float,
    hkl: IntArray,
    *,
    refine_zero: bool,
    tolerance: float,
    weights: FloatArray | None = None,
    zero: FloatArray | None = None,
    iterations: int = 4,
) -> RefinedTrials:
    """Assign each line to the nearest calculated 1/d² and refine (params, zero) by weighted linear least
    squares, ``iterations`` times. Lines further than ``tolerance`` (degrees 2θ) from any reflection get no
    weight. ``hkl`` (H, 3) is the candidate reflection list covering the lines for every trial."""
    params = np.array(params, dtype=np.float64, copy=True)
    m, p = params.shape
    n = two_theta.size
    x_all = model.design(hkl)
    z = np.zeros(m) if zero is None else np.array(zero, dtype=np.float64, copy=True)
    w_line = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    assigned = np.zeros((m, n), dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * len(hkl)))
    for it in range(iterations):
        tt = two_theta[None, :] - z[:, None]
        q = inv_d2(tt, wavelength)
        g = d_inv_d2(tt, wavelength)
        q_top = float(q.max()) * 1.05
        for s in range(0, m, chunk):
            qc = params[s : s + chunk] @ x_all.T
            reach = np.flatnonzero(qc.min(axis=0) <= q_top)  # reflections that can reach the lines
            if reach.size == 0:
                reach = np.arange(x_all.shape[0])
            near = np.argmin(np.abs(qc[:, None, reach] - q[s : s + chunk, :, None]), axis=2)
            assigned[s : s + chunk] = reach[near]
        xa = x_all[assigned]  # (M, N, P)
        q_calc = np.einsum("mnp,mp->mn", xa, params)
        resid_tt = (q - q_calc) / g
        use = np.abs(resid_tt) <= tolerance * (3.0 if it == 0 else 1.5)
        w = use * w_line[None, :] / g  # rows scaled to 2θ units
        cols = [xa]
        if refine_zero:
            cols.append(g[:, :, None])
        design = np.concatenate(cols, axis=2) * w[:, :, None]
        target = (q + (z[:, None] * g if refine_zero else 0.0)) * w
        # absolute zero: q(2θ − z) + z g ≈ q(2θ) − z g + z g; solving for the total zero keeps it linear
        normal = np.einsum("mni,mnj->mij", design, design)
        rhs = np.einsum("mni,mn->mi", design, target)
        k = normal.shape[1]
        scale = np.sqrt(np.maximum(np.einsum("mii->mi", normal), 1e-300))
        normal = normal / scale[:, :, None] / scale[:, None, :] + 1e-12 * np.eye(k)
        sol = np.linalg.solve(normal, (rhs / scale)[:, :, None])[:, :, 0] / scale
        enough = use.sum(axis=1) > k
        params = np.where(enough[:, None], sol[:, :p], params)
        if refine_zero:
            z = np.where(enough, sol[:, p], z)
    tt = two_theta[None, :] - z[:, None]
    q_calc = np.einsum("mnp,mp->mn", x_all[assigned], params)
    resid = tt - two_theta_from_inv_d2(q_calc, wavelength)
    return RefinedTrials(params, z, hkl[assigned], np.nan_to_num(resid, nan=180.0))
