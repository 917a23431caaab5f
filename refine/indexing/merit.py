"""Figures of merit for powder indexing: de Wolff M_N and Smith–Snyder F_N."""

from __future__ import annotations

import numpy as np

from .systems import FloatArray


def distinct_count(values: FloatArray, upper: float, rel_tol: float = 1e-7) -> int:
    """Number of distinct values ≤ ``upper`` (values closer than ``rel_tol``·upper count once)."""
    v = np.sort(values[values <= upper * (1.0 + rel_tol)])
    if v.size == 0:
        return 0
    return int(1 + np.count_nonzero(np.diff(v) > rel_tol * upper))


def de_wolff_m(q_obs: FloatArray, q_calc_lines: FloatArray, q_calc_all: FloatArray, n: int = 20) -> float:
    """de Wolff M_N (J. Appl. Cryst. 1, 108, 1968) with N = min(n, lines).

    ``q_obs`` observed 1/d² (Å⁻², zero-corrected, ascending), ``q_calc_lines`` the calculated 1/d² of the
    reflection assigned to each observed line, ``q_calc_all`` every calculated 1/d² of the cell (lattice
    centring applied). M_N = Q_N / (2 ε̄ N_calc), ε̄ the mean |ΔQ| over the N lines.
    """
    n = min(n, q_obs.size)
    if n == 0:
        return 0.0
    q_n = float(q_obs[n - 1])
    eps = float(np.mean(np.abs(q_obs[:n] - q_calc_lines[:n])))
    n_calc = distinct_count(q_calc_all, q_n)
    if n_calc == 0:
        return 0.0
    return q_n / (2.0 * max(eps, 1e-12) * n_calc)


def smith_snyder_f(
    tt_obs: FloatArray, tt_calc_lines: FloatArray, tt_calc_all: FloatArray, n: int = 30
) -> tuple[float, int, float, int]:
    """Smith–Snyder F_N (J. Appl. Cryst. 12, 60, 1979): (F_N, N, mean |Δ2θ| in degrees, N_possible).

    ``tt_obs`` zero-corrected observed 2θ (degrees, ascending), ``tt_calc_lines`` the calculated 2θ
    assigned to each line, ``tt_calc_all`` every calculated 2θ of the cell.
    """
    n = min(n, tt_obs.size)
    if n == 0:
        return 0.0, 0, float("nan"), 0
    delta = float(np.mean(np.abs(tt_obs[:n] - tt_calc_lines[:n])))
    finite = tt_calc_all[np.isfinite(tt_calc_all)]
    n_poss = distinct_count(finite, float(tt_obs[n - 1]), rel_tol=1e-6)
    if n_poss == 0:
        return 0.0, n, delta, 0
    return n / (max(delta, 1e-9) * n_poss), n, delta, n_poss
