"""The standard match metric: pymatgen StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from pymatgen.analysis.structure_matcher import AbstractComparator, StructureMatcher
from pymatgen.core import Structure

MATCHER_KW: dict[str, float] = {"stol": 0.5, "angle_tol": 10, "ltol": 0.3}


def matcher(comparator: AbstractComparator | None = None) -> StructureMatcher:
    """The benchmark matcher (stol=0.5, angle_tol=10, ltol=0.3); ``comparator`` a pymatgen site comparator
    (default: species)."""
    return StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3, comparator=comparator)


def rms_if_match(
    truth: Structure, candidate: Structure, sm_in: StructureMatcher | None = None
) -> float | None:
    """Normalised RMS displacement when ``candidate`` matches ``truth``, else None."""
    if candidate.composition.reduced_composition != truth.composition.reduced_composition:
        return None
    return matched_rms(sm_in or matcher(), truth, candidate)


def matched_rms(sm: StructureMatcher, truth: Structure, candidate: Structure) -> float | None:
    """``sm``'s normalised RMS displacement between ``truth`` and ``candidate``, None when they do not match
    or the candidate's lattice is degenerate (no composition check of its own)."""
    if not np.isfinite(candidate.lattice.volume) or candidate.lattice.volume <= 0:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.get_rms_dist(truth, candidate)
    except Exception:  # StructureMatcher raises on degenerate lattices
        return None
    return None if res is None else float(res[0])


def match_rate(
    truth: Sequence[Structure], candidates: Sequence[Sequence[Structure]], k: int | None = None
) -> tuple[float, list[float | None]]:
    """Fraction of ``truth`` structures matched by any of the first ``k`` candidates; best RMS per target."""
    sm = matcher()
    best: list[float | None] = []
    for t, cands in zip(truth, candidates, strict=True):
        rms = [rms_if_match(t, c, sm) for c in (cands if k is None else cands[:k])]
        found = [r for r in rms if r is not None]
        best.append(min(found) if found else None)
    hits = sum(r is not None for r in best)
    return hits / max(1, len(truth)), best


def min_distance(structure: Structure) -> float:
    """Smallest interatomic distance (Å, periodic images included)."""
    if len(structure) == 1:
        a = structure.lattice.abc
        return float(min(a))
    d = structure.distance_matrix + np.eye(len(structure)) * 1e9
    return float(d.min())
