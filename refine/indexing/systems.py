"""Crystal-system parametrisations of the reciprocal metric used by the indexing search.

Every system writes ``1/d² (Å⁻²) = X(hkl) · p`` with a parameter vector ``p`` that enters linearly:

* cubic        p = (A)             A = a*²,  X = h²+k²+l²
* tetragonal   p = (A, C)          X = (h²+k², l²)
* hexagonal    p = (A, C)          A = a*² = 4/(3a²), X = (h²+hk+k², l²)
* orthorhombic p = (A, B, C)       X = (h², k², l²), searched with a ≤ b ≤ c (A ≥ B ≥ C)
* monoclinic   p = (A, B, C, E)    b unique, E = 2 a*·c*, X = (h², k², l², hl); searched in the reduced
  reciprocal setting 0 ≤ E ≤ A ≤ C (β* between 60° and 90°), which every monoclinic lattice admits.

Because 1/d² is linear in ``p``, its exact range over a box of parameters is given by two matrix
products, which is what makes the dichotomy exact and vectorised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

CrystalSystem = Literal["cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic"]

#: Search order: highest symmetry first.
SYSTEMS: tuple[CrystalSystem, ...] = ("cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic")

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class SystemModel:
    """How one crystal system maps parameters ``p`` and Miller indices to 1/d² (Å⁻²)."""

    name: CrystalSystem
    n_params: int

    def design(self, hkl: IntArray) -> FloatArray:
        """Design matrix X (H, P) so that 1/d² = X @ p for each row of ``hkl`` (H, 3)."""
        h, k, l_ = (hkl[:, i].astype(np.float64) for i in range(3))
        if self.name == "cubic":
            return np.stack([h * h + k * k + l_ * l_], axis=1)
        if self.name == "tetragonal":
            return np.stack([h * h + k * k, l_ * l_], axis=1)
        if self.name == "hexagonal":
            return np.stack([h * h + h * k + k * k, l_ * l_], axis=1)
        if self.name == "orthorhombic":
            return np.stack([h * h, k * k, l_ * l_], axis=1)
        return np.stack([h * h, k * k, l_ * l_, h * l_], axis=1)

    def hkl_candidates(self, lo: FloatArray, inv_d2_max: float) -> IntArray:
        """Non-equivalent hkl (for this system's Laue class) that can reach 1/d² ≤ ``inv_d2_max``
        for some parameters ≥ ``lo`` (the lower corner of the search box)."""
        if self.name == "cubic":
            n = math.floor(math.sqrt(inv_d2_max / lo[0])) + 1
            r = np.arange(n + 1)
            hkl = _grid(r, r, r)
            hkl = hkl[(hkl[:, 0] >= hkl[:, 1]) & (hkl[:, 1] >= hkl[:, 2])]
        elif self.name in ("tetragonal", "hexagonal"):
            # hexagonal: h²+hk+k² ≥ h² for h, k ≥ 0
            n = math.floor(math.sqrt(inv_d2_max / lo[0])) + 1
            m = math.floor(math.sqrt(inv_d2_max / lo[1])) + 1
            r = np.arange(n + 1)
            hkl = _grid(r, r, np.arange(m + 1))
            hkl = hkl[hkl[:, 0] >= hkl[:, 1]]
        elif self.name == "orthorhombic":
            hs = [math.floor(math.sqrt(inv_d2_max / lo[i])) + 1 for i in range(3)]
            hkl = _grid(np.arange(hs[0] + 1), np.arange(hs[1] + 1), np.arange(hs[2] + 1))
        else:
            # with 0 ≤ E ≤ A ≤ C: A h² + C l² + E hl ≥ A (h² + l²) / 2
            n = math.floor(math.sqrt(2.0 * inv_d2_max / lo[0])) + 1
            m = math.floor(math.sqrt(inv_d2_max / lo[1])) + 1
            hkl = monoclinic_half(n, m, n)
        hkl = hkl[np.any(hkl != 0, axis=1)]
        x = self.design(hkl)
        qmin = x @ lo if self.name != "monoclinic" else _mono_lower(x, lo)
        return hkl[qmin <= inv_d2_max]

    def feasible(self, lo: FloatArray, hi: FloatArray) -> NDArray[np.bool_]:
        """Boxes (M, P) that contain at least one point obeying the setting conventions."""
        ok = np.all(hi > 0, axis=1)
        if self.name == "orthorhombic":  # A ≥ B ≥ C
            ok &= (hi[:, 0] >= lo[:, 1]) & (hi[:, 1] >= lo[:, 2])
        elif self.name == "monoclinic":  # 0 ≤ E ≤ A ≤ C
            ok &= (hi[:, 2] >= lo[:, 0]) & (hi[:, 0] >= lo[:, 3])
        return ok

    def volume_range(self, lo: FloatArray, hi: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Lower and upper bounds of the cell volume (Å³) over boxes (M, P); upper may be inf.

        V = 1/√det. For monoclinic, det = B (A C − E²/4) with E ≥ 0 in the searched domain: it is largest at
        the upper corner of A, B, C with the *smallest* E, and smallest at the lower corner with the largest E.
        """
        if self.name != "monoclinic":
            return self.volume(hi), self.volume(lo)
        return self.volume(_with_column(hi, 3, lo[:, 3])), self.volume(_with_column(lo, 3, hi[:, 3]))

    def volume(self, p: FloatArray) -> FloatArray:
        """Cell volume (Å³) for parameters (M, P); inf where they describe no lattice."""
        p = np.atleast_2d(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "cubic":
                det = p[:, 0] ** 3
            elif self.name == "tetragonal":
                det = p[:, 0] ** 2 * p[:, 1]
            elif self.name == "hexagonal":
                det = p[:, 0] ** 2 * p[:, 1] * 0.75
            elif self.name == "orthorhombic":
                det = p[:, 0] * p[:, 1] * p[:, 2]
            else:
                det = p[:, 1] * (p[:, 0] * p[:, 2] - p[:, 3] ** 2 / 4.0)
            vol = np.where(det > 0, 1.0 / np.sqrt(np.where(det > 0, det, 1.0)), np.inf)
        return np.asarray(vol, dtype=np.float64)

    def ranges(self, a_min: float, a_max: float) -> tuple[FloatArray, FloatArray]:
        """Initial parameter box for cell edges between ``a_min`` and ``a_max`` (Å)."""
        s_lo, s_hi = 1.0 / a_max**2, 1.0 / a_min**2
        if self.name == "hexagonal":
            lo = np.array([4.0 / 3.0 * s_lo, s_lo])
            hi = np.array([4.0 / 3.0 * s_hi, s_hi])
        elif self.name == "monoclinic":
            # a*, c* ≥ 1/a_max; E ≤ A
            lo = np.array([s_lo, s_lo, s_lo, 0.0])
            hi = np.array([s_hi / 0.75, s_hi, s_hi / 0.75, s_hi / 0.75])
        else:
            lo = np.full(self.n_params, s_lo)
            hi = np.full(self.n_params, s_hi)
        return lo, hi

    # --- box coordinates u used by the dichotomy -------------------------------------------------
    # u = log(p) for the squared reciprocal lengths (relative resolution is what indexing needs: a
    # reflection's 1/d² range over a box is then about Δu·1/d² whatever its indices); for monoclinic
    # the last coordinate is E itself (linear, so its bounds stay exact).

    def u_ranges(self, a_min: float, a_max: float) -> tuple[FloatArray, FloatArray]:
        """Initial box in u coordinates for cell edges between ``a_min`` and ``a_max`` (Å)."""
        lo, hi = self.ranges(a_min, a_max)
        if self.name == "monoclinic":
            return np.array([*np.log(lo[:3]), 0.0]), np.array([*np.log(hi[:3]), hi[3]])
        return np.log(lo), np.log(hi)

    def box_params(self, u_lo: FloatArray, u_hi: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Lower and upper bounds (M, P) of the linear parameters p over boxes in u (M, P)."""
        if self.name != "monoclinic":
            return np.exp(u_lo), np.exp(u_hi)
        p_lo = np.exp(u_lo[:, :3])
        p_hi = np.exp(u_hi[:, :3])
        return np.column_stack([p_lo, u_lo[:, 3]]), np.column_stack([p_hi, u_hi[:, 3]])

    def u_centre(self, u_lo: FloatArray, u_hi: FloatArray) -> FloatArray:
        """Parameters p (M, P) at the centres of boxes in u."""
        mid = (u_lo + u_hi) / 2.0
        if self.name != "monoclinic":
            return np.exp(mid)
        p = np.exp(mid[:, :3])
        return np.column_stack([p, mid[:, 3]])

    def cell(self, p: FloatArray) -> tuple[float, float, float, float, float, float]:
        """Direct cell (a, b, c in Å; α, β, γ in degrees) for one parameter vector."""
        p = np.asarray(p, dtype=np.float64)
        if self.name == "cubic":
            a = 1.0 / math.sqrt(p[0])
            return (a, a, a, 90.0, 90.0, 90.0)
        if self.name == "tetragonal":
            a, c = 1.0 / math.sqrt(p[0]), 1.0 / math.sqrt(p[1])
            return (a, a, c, 90.0, 90.0, 90.0)
        if self.name == "hexagonal":
            a, c = math.sqrt(4.0 / (3.0 * p[0])), 1.0 / math.sqrt(p[1])
            return (a, a, c, 90.0, 90.0, 120.0)
        if self.name == "orthorhombic":
            return (1.0 / math.sqrt(p[0]), 1.0 / math.sqrt(p[1]), 1.0 / math.sqrt(p[2]), 90.0, 90.0, 90.0)
        astar, bstar, cstar = math.sqrt(p[0]), math.sqrt(p[1]), math.sqrt(p[2])
        cos_bs = p[3] / (2.0 * astar * cstar)
        sin_bs = math.sqrt(max(1.0 - cos_bs * cos_bs, 1e-12))
        a, b, c = 1.0 / (astar * sin_bs), 1.0 / bstar, 1.0 / (cstar * sin_bs)
        beta = 180.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_bs))))
        return (a, b, c, 90.0, beta, 90.0)


def _with_column(p: FloatArray, column: int, values: FloatArray) -> FloatArray:
    out = np.array(p, dtype=np.float64, copy=True)
    out[:, column] = values
    return out


def _grid(h: IntArray, k: IntArray, l_: IntArray) -> IntArray:
    g = np.stack(np.meshgrid(h, k, l_, indexing="ij"), axis=-1).reshape(-1, 3)
    return g.astype(np.int64)


def monoclinic_half(h_max: int, k_max: int, l_max: int) -> IntArray:
    """hkl with |h| ≤ ``h_max``, 0 ≤ k ≤ ``k_max``, 0 ≤ l ≤ ``l_max``, one of each Friedel pair (l > 0, or
    l = 0 with h ≥ 0): one per distinct monoclinic 1/d² (k's sign does not enter it); 000 included."""
    hkl = _grid(np.arange(-h_max, h_max + 1), np.arange(k_max + 1), np.arange(l_max + 1))
    return hkl[(hkl[:, 2] > 0) | (hkl[:, 0] >= 0)]


def _mono_lower(x: FloatArray, lo: FloatArray) -> FloatArray:
    """Loose lower bound of 1/d² for monoclinic hkl over the reduced domain above ``lo``."""
    return 0.5 * (x[:, 0] + x[:, 2]) * lo[0] + x[:, 1] * lo[1]


def box_bounds(x: FloatArray, lo: FloatArray, hi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Exact min and max of 1/d² = X @ p over boxes: X (H, P), lo/hi (M, P) -> two (M, H) arrays."""
    xp = np.maximum(x, 0.0)
    xn = np.minimum(x, 0.0)
    qmin = lo @ xp.T + hi @ xn.T
    qmax = hi @ xp.T + lo @ xn.T
    return qmin, qmax


MODELS: dict[CrystalSystem, SystemModel] = {
    "cubic": SystemModel("cubic", 1),
    "tetragonal": SystemModel("tetragonal", 2),
    "hexagonal": SystemModel("hexagonal", 2),
    "orthorhombic": SystemModel("orthorhombic", 3),
    "monoclinic": SystemModel("monoclinic", 4),
}
