"""``xrdsolve bench index``: how often the solve's indexing finds the true cell, on the solve benchmark's patterns.

The patterns are those of ``xrdsolve bench solve`` (MP-20 rows simulated with randomised instrument
effects, same seed). Each is indexed as the solve indexes it (:func:`xrdsolve.pipeline.index_pattern`,
with the composition); a cell the solve would use is the true one when it is the same lattice as the true
structure's conventional or primitive standard cell: volume within :data:`VOLUME_TOLERANCE` and
``Lattice.find_mapping`` within :data:`LENGTH_TOLERANCE` (relative) and :data:`ANGLE_TOLERANCE` (degrees).

Per-pattern records are appended to a JSON-lines file as they finish, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Relative volume difference within which an indexed cell can be the true one.
VOLUME_TOLERANCE = 0.03
#: Relative length tolerance of ``Lattice.find_mapping`` (indexed cells carry the errors of the zero shift
#: and of the fitted line positions; the tolerance of the one-off script behind the figures of 2026-11-29).
LENGTH_TOLERANCE = 0.02
#: Angle tolerance (degrees) of ``Lattice.find_mapping``.
ANGLE_TOLERANCE = 1.0


@dataclass(frozen=True)
class BenchIndexSettings:
    """What is benchmarked. ``time_limit`` in seconds (the solve gives indexing 0.3 of its budget: 18 s of 60)."""

    split: str = "val"
    n: int = 100
    time_limit: float = 18.0
    max_cells: int = 3
    seed: int = 0

    def key(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "time_limit": self.time_limit,
            "max_cells": self.max_cells,
            "seed": self.seed,
        }


def true_cell_rank(cells: Sequence[Any], truth: Any) -> int | None:
    """1-based rank of the first lattice in ``cells`` (pymatgen Lattices) that is the true structure's
    conventional or primitive standard lattice (see the module docstring); None when none is."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(truth, symprec=0.1)
    references = [
        sga.get_conventional_standard_structure().lattice,
        sga.get_primitive_standard_structure().lattice,
    ]
    for rank, lattice in enumerate(cells, 1):
        for ref in references:
            if abs(lattice.volume / ref.volume - 1.0) > VOLUME_TOLERANCE:
                continue
            if lattice.find_mapping(ref, ltol=LENGTH_TOLERANCE, atol=ANGLE_TOLERANCE) is not None:
                return rank
    return None


def index_one(pattern: Any, truth: Any, settings: BenchIndexSettings) -> dict[str, Any]:
    """Index ``pattern`` (of the known ``truth`` structure) as the solve does; the per-pattern record."""
    from xrdsolve.pipeline import index_pattern

    t0 = time.perf_counter()
    cells, tried = index_pattern(
        pattern, time_limit=settings.time_limit, max_cells=settings.max_cells, composition=truth.composition
    )
    seconds = time.perf_counter() - t0
    return {
        "formula": truth.composition.reduced_formula,
        "seconds": round(seconds, 2),
        "cells": len(cells),
        "true_cell_rank": true_cell_rank([cell.lattice() for cell, _ in cells], truth),
        "best_m20": round(float(cells[0][0].m20), 1) if cells else None,
        "tolerance": tried.get("indexing", {}).get("tolerance"),
        "searches": _search_seconds(tried),
    }


def _search_seconds(tried: dict[str, Any]) -> dict[str, float]:
    """Seconds spent by each indexing search the solve ran (its ``tried["indexing_*"]`` records)."""
    out = {}
    for key, record in tried.items():
        if not key.startswith("indexing_") or not isinstance(record, dict):
            continue
        passes = record.get("passes", [record])
        seconds = sum(float(p.get("seconds", 0.0)) for p in passes if isinstance(p, dict))
        out[key.removeprefix("indexing_")] = round(seconds, 2)
    return out


def summarise(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Patterns whose true cell is among the cells used, and first; seconds per pattern (median, p90, max)."""
    rows = list(records)
    if not rows:
        return {"n": 0}
    ranks = [r["true_cell_rank"] for r in rows]
    seconds = np.array([r["seconds"] for r in rows], dtype=float)
    return {
        "n": len(rows),
        "true_cell_used": sum(x is not None for x in ranks),
        "true_cell_first": sum(x == 1 for x in ranks),
        "no_cell": sum(r["cells"] == 0 for r in rows),
        "median_s": round(float(np.median(seconds)), 1),
        "p90_s": round(float(np.percentile(seconds, 90)), 1),
        "max_s": round(float(seconds.max()), 1),
    }


def bench_index(
    settings: BenchIndexSettings,
    records_path: Path,
    indices: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the benchmark on the first ``settings.n`` rows, or on the rows ``indices`` of them
    (e.g. one share of the rows per process); records go to ``records_path`` (JSON lines)."""
    from tqdm.auto import tqdm

    from xrdsolve.bench_solve import benchmark_patterns
    from xrdsolve.jsonio import read_records

    recs, truth, patterns = benchmark_patterns(settings.split, settings.n, settings.seed)
    wanted = list(range(len(truth))) if indices is None else [i for i in indices if 0 <= i < len(truth)]
    done = {int(r["index"]): r for r in read_records(records_path, settings.key())}
    records_path.parent.mkdir(parents=True, exist_ok=True)
    with records_path.open("a") as sink:
        for i in tqdm([i for i in wanted if i not in done], desc="bench index", disable=not progress):
            rec = index_one(patterns[i], truth[i], settings) | {"index": i, "id": recs[i].id}
            rec["settings"] = settings.key()
            sink.write(json.dumps(rec) + "\n")
            sink.flush()
            done[i] = rec
    return {"bench": "index", **settings.key()} | summarise(done[i] for i in wanted if i in done)
