"""Monoclinic trial indexing in the style of TREOR (Werner, Eriksson & Westdahl, J. Appl. Cryst. 18, 367,
1985): four of the first lines are given low-index reflections, the four reciprocal-metric parameters
follow exactly from them, and a trial survives when it indexes the next lines too.

The dichotomy's four-parameter search outgrows its box limit on many monoclinic patterns (the boxes grow
3–5× per level when every edge may reach 12 Å); the trials cost the same whatever the cell: every ordered
choice of four base reflections (|h|, k, l ≤ :data:`BASE_INDEX`, one per orbit of the a ↔ c and a → −a
relabellings, which give the same lattice) is inverted once per process, and a trial for four lines is one
4 × 4 matrix product, vectorised over the ~356,000 choices. Parameters as in
:mod:`~xrdsolve.refine.indexing.systems`: 1/d² (Å⁻²) = A h² + B k² + C l² + E hl.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable

import numpy as np

from .systems import MODELS, FloatArray, IntArray, monoclinic_half

#: Largest |h|, k and l of the reflections given to the base lines.
BASE_INDEX = 2
#: Largest |h|, k and l of the reflections that the check lines may take.
CHECK_INDEX = 4
_CHUNK = 100_000


def _forms(n: int) -> IntArray:
    """Non-zero hkl with |h|, k, l ≤ ``n`` (Å⁻² metric rows distinct): k ≥ 0, l > 0 or l = 0 with h ≥ 0."""
    g = monoclinic_half(n, n, n)
    return g[np.any(g != 0, axis=1)]


def _image(forms: IntArray, transform: Callable[[IntArray], IntArray]) -> IntArray:
    """Index in ``forms`` of each form's image under ``transform`` (brought back to k ≥ 0 and the Friedel
    half kept)."""
    g = transform(forms)
    flip = (g[:, 2] < 0) | ((g[:, 2] == 0) & (g[:, 0] < 0))
    g = np.where(flip[:, None], -g, g)
    g[:, 1] = np.abs(g[:, 1])
    lookup = {tuple(row): i for i, row in enumerate(forms.tolist())}
    return np.array([lookup[tuple(row)] for row in g.tolist()], dtype=np.int64)


@functools.cache
def base_inverses() -> tuple[IntArray, FloatArray]:
    """Every non-singular ordered choice of four base reflections, one per relabelling orbit: their indices
    into :func:`_forms` (Q, 4) and the inverses (Q, 4, 4) of their design matrices (float32: a trial needs
    ~1e-4 relative precision). Built once per process (about a second)."""
    forms = _forms(BASE_INDEX)
    n = len(forms)
    choice = np.indices((n,) * 4).reshape(4, -1).T
    code = ((choice[:, 0] * n + choice[:, 1]) * n + choice[:, 2]) * n + choice[:, 3]
    keep = np.ones(len(choice), dtype=bool)
    for transform in (
        lambda f: f[:, [2, 1, 0]],  # a ↔ c: A ↔ C
        lambda f: f * np.array([-1, 1, 1]),  # a → −a: E → −E
        lambda f: f[:, [2, 1, 0]] * np.array([-1, 1, 1]),
    ):
        image = _image(forms, transform)[choice]
        keep &= code <= ((image[:, 0] * n + image[:, 1]) * n + image[:, 2]) * n + image[:, 3]
    choice = choice[keep]
    design = MODELS["monoclinic"].design(forms)[choice]  # (Q, 4, 4)
    regular = np.abs(np.linalg.det(design)) > 1e-9
    choice, design = choice[regular], design[regular]
    return choice, np.linalg.inv(design).astype(np.float32)


def monoclinic_trials(
    q_obs: FloatArray,
    q_tol: FloatArray,
    *,
    v_min: float,
    v_max: float,
    a_max: float,
    n_base: int = 6,
    n_check: int = 10,
    max_missed: int = 1,
    tolerance_factor: float = 2.0,
    max_trials: int = 2000,
    deadline: float | None = None,
) -> FloatArray:
    """Trial monoclinic parameters (M, 4) = (A, B, C, E) in Å⁻², most promising first.

    Every four of the first ``n_base`` lines of ``q_obs`` (1/d², Å⁻², ascending) are given every base choice;
    the trials that describe a lattice with volume ``v_min``–``v_max`` (Å³) and a*, b*, c* ≥ 1/``a_max`` (Å)
    are checked against the other lines of the first ``n_check``: a line is indexed when a reflection with
    indices ≤ :data:`CHECK_INDEX` lies within ``tolerance_factor`` × ``q_tol`` of it (the zero shift is not
    refined yet), and a trial may miss ``max_missed`` of them. At most ``max_trials`` are returned, fewest
    missed and smallest volume first; they are to be refined against every line. The search stops early,
    with what it has, at ``deadline`` (time.monotonic()).
    """
    model = MODELS["monoclinic"]
    _, inverse = base_inverses()
    check = model.design(_forms(CHECK_INDEX)).astype(np.float32)
    n_check = min(n_check, len(q_obs))
    s_min = np.float32(1.0 / a_max**2)
    kept: list[FloatArray] = []
    missed_kept: list[IntArray] = []
    for base in itertools.combinations(range(min(n_base, len(q_obs))), 4):
        q_base = q_obs[list(base)].astype(np.float32)
        others = [j for j in range(n_check) if j not in base]
        for start in range(0, len(inverse), _CHUNK):
            p = inverse[start : start + _CHUNK] @ q_base
            a, b, c, e = p.T
            det = b * (a * c - e * e / 4.0)
            ok = (a > s_min) & (b > s_min) & (c > s_min) & (det > 0)
            p, det = p[ok], det[ok]
            vol = 1.0 / np.sqrt(det)
            p = p[(vol >= v_min) & (vol <= v_max)]
            missed = np.zeros(len(p), dtype=np.int64)
            for j in others:  # one line at a time: most trials are gone after two or three
                if len(p) == 0:
                    break
                hit = (np.abs(p @ check.T - np.float32(q_obs[j])) <= tolerance_factor * q_tol[j]).any(axis=1)
                missed += ~hit
                alive = missed <= max_missed
                p, missed = p[alive], missed[alive]
            if len(p):
                kept.append(p.astype(np.float64))
                missed_kept.append(missed)
        if deadline is not None and time.monotonic() > deadline:
            break
    if not kept:
        return np.zeros((0, 4))
    params = np.concatenate(kept)
    missed = np.concatenate(missed_kept)
    order = np.lexsort((model.volume(params), missed))[:max_trials]
    return params[order]
