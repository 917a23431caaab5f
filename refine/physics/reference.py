"""Comparison with pymatgen's XRDCalculator (the reference stick patterns used in tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure


@dataclass(frozen=True)
class StickComparison:
    """Differences between two stick patterns, intensities scaled so the strongest is 100.

    max_position_error: degrees 2θ over matched peaks; max_intensity_error: in % of the strongest, over peaks
    stronger than ``min_relative`` % in either pattern; unmatched: peaks above ``min_relative`` % with no
    partner within the position tolerance.
    """

    max_position_error: float
    max_intensity_error: float
    unmatched: int
    n_peaks: int


def pymatgen_sticks(
    structure: Structure, wavelength: float, two_theta_range: tuple[float, float] = (5.0, 90.0)
) -> tuple[np.ndarray, np.ndarray]:
    """pymatgen XRDCalculator stick pattern (2θ degrees, intensity scaled to 100), no symmetrisation."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    pattern = XRDCalculator(wavelength=float(wavelength)).get_pattern(
        structure, two_theta_range=two_theta_range
    )
    return np.asarray(pattern.x, dtype=float), np.asarray(pattern.y, dtype=float)


def compare_sticks(
    ours: Sequence[dict[str, Any]] | tuple[np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray],
    min_relative: float = 1.0,
    cluster_tol: float = 1e-4,
) -> StickComparison:
    """Compare two stick patterns peak by peak.

    ``ours`` is a :func:`reflection_table` list or (2θ, I) arrays; ``reference`` (2θ, I). Intensities are
    rescaled so each pattern's strongest peak is 100. Sticks of both patterns closer than ``cluster_tol``
    degrees are clustered first (pymatgen bins reflections on a 1e-5° grid, so near-coincident reflections of
    a slightly non-symmetric cell may be split differently by the two codes); per cluster, the summed
    intensities and intensity-weighted positions are compared. Clusters above ``min_relative`` % present in
    only one pattern count as unmatched.
    """
    if isinstance(ours, tuple):
        tt_a, i_a = (np.asarray(v, dtype=float) for v in ours)
    else:
        tt_a = np.asarray([r["two_theta"] for r in ours], dtype=float)
        i_a = np.asarray([r["intensity"] for r in ours], dtype=float)
    tt_b, i_b = (np.asarray(v, dtype=float) for v in reference)
    if tt_a.size == 0 or tt_b.size == 0:
        n = int((tt_a.size == 0) != (tt_b.size == 0))
        return StickComparison(0.0, 0.0, n, max(tt_a.size, tt_b.size))
    i_a = 100.0 * i_a / i_a.max()
    i_b = 100.0 * i_b / i_b.max()
    tt = np.concatenate([tt_a, tt_b])
    inten = np.concatenate([i_a, i_b])
    src = np.concatenate([np.zeros(tt_a.size, dtype=int), np.ones(tt_b.size, dtype=int)])
    order = np.argsort(tt, kind="stable")
    tt, inten, src = tt[order], inten[order], src[order]
    cluster = np.r_[0, np.cumsum(np.diff(tt) > cluster_tol)]
    n = int(cluster[-1]) + 1
    sums = np.zeros((2, n))
    wpos = np.zeros((2, n))
    cnt = np.zeros((2, n))
    np.add.at(sums, (src, cluster), inten)
    np.add.at(wpos, (src, cluster), inten * tt)
    np.add.at(cnt, (src, cluster), 1.0)
    strong = sums.max(axis=0) > min_relative
    both = (cnt > 0).all(axis=0)
    unmatched = int((strong & ~both).sum())
    ok = strong & both & (sums > 0).all(axis=0)
    if not ok.any():
        return StickComparison(0.0, 0.0, unmatched, int(tt_b.size))
    pos = wpos[:, ok] / sums[:, ok]
    return StickComparison(
        float(np.abs(pos[0] - pos[1]).max()),
        float(np.abs(sums[0, ok] - sums[1, ok]).max()),
        unmatched,
        int(tt_b.size),
    )
