"""``xrdsolve bench real``: where the reference structure ranks when measured patterns are solved.

The single-phase cases of the shared real data (``$XRDSOLVE_SHARED_DATA/real``: lab, synchrotron and
constant-wavelength neutron patterns with their instrument files and reference CIFs) are solved from
the reference's composition with :func:`xrdsolve.solve`, exactly as a user would run ``xrdsolve solve
PATTERN --composition FORMULA --instrument FILE``. Each record says where the reference structure ranks
among the candidates returned (StructureMatcher stol=0.5, angle_tol=10, ltol=0.3, as in ``bench
solve``), whether indexing put the reference's lattice among the cells it used, and the best
candidate's fit. Multiphase cases are left out: the solver looks for one phase.

Records are appended to a JSON-lines file as cases finish, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Relative length tolerance (and angle tolerance, degrees) for "indexing found the reference's lattice":
#: measured cells differ from their CIF's by up to ~1 % (sucrose's data cell is 1 % smaller).
CELL_LTOL = 0.02
CELL_ATOL = 1.0
#: Largest difference in any element's atomic fraction for a candidate to match a reference when either is
#: disordered (refined occupancies scatter by a few %: La0.5Ba0.5CoO3 refines to Ba0.45La0.55, 0.0095 apart).
OCCUPANCY_TOLERANCE = 0.02


@dataclass(frozen=True)
class RealCase:
    """One single-phase measured pattern: files (absolute paths) and the 2θ range (degrees) to use."""

    name: str
    pattern: Path
    instrument: Path
    reference: Path
    radiation: str
    limits: tuple[float, float] | None = None


@dataclass(frozen=True)
class BenchRealSettings:
    """How each case is solved. Times in seconds."""

    k: int = 20
    candidates: int = 48
    seed: int = 0
    time_budget: float | None = 60.0

    def key(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "candidates": self.candidates,
            "seed": self.seed,
            "time_budget": self.time_budget,
        }


def real_data_dir() -> Path:
    """``$XRDSOLVE_SHARED_DATA/real``: the shared data's ``real`` folder, beside its structure sets
    (:func:`xrdsolve.generate.data.shared_structure_dir`)."""
    from xrdsolve.generate.data import shared_structure_dir

    return shared_structure_dir().parent / "real"


def real_cases(root: Path | None = None) -> list[RealCase]:
    """The single-phase cases of ``root`` (default :func:`real_data_dir`) that have a pattern, an
    instrument file and a reference CIF, in the manifest's order."""
    from xrdsolve.errors import UsageError

    root = root or real_data_dir()
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise UsageError(f"real-data manifest not found: {manifest} (set XRDSOLVE_SHARED_DATA)")
    cases = []
    for entry in json.loads(manifest.read_text()):
        cfg = entry.get("cfg") or {}
        if cfg.get("multi") or not cfg.get("pattern") or not cfg.get("inst") or not cfg.get("cifs"):
            continue
        folder = root / entry["case"]
        limits = cfg.get("limits")
        cases.append(
            RealCase(
                name=entry["case"],
                pattern=(folder / cfg["pattern"]).resolve(),
                instrument=(folder / cfg["inst"]).resolve(),
                reference=(folder / cfg["cifs"][0]).resolve(),
                radiation=str(cfg.get("rad", "")),
                limits=(float(limits[0]), float(limits[1])) if limits else None,
            )
        )
    return cases


def reference_lattice_found(reference: Any, cells: Iterable[dict[str, Any]]) -> bool:
    """Whether one of the indexed ``cells`` (``tried["indexing"]["used"]`` entries: conventional a b c in Å,
    angles in degrees, centring letter) describes the reference structure's lattice."""
    from pymatgen.core import Lattice

    from xrdsolve.refine.indexing.solution import primitive_lattice, same_lattice

    target = reference.get_primitive_structure().lattice.get_niggli_reduced_lattice()
    for cell in cells:
        lattice = Lattice.from_parameters(
            *(float(cell[x]) for x in ("a", "b", "c", "alpha", "beta", "gamma"))
        )
        letters = ("R", "Rrev") if cell.get("centring") == "R" else (str(cell.get("centring", "P")),)
        for letter in letters:
            reduced = primitive_lattice(lattice, letter).get_niggli_reduced_lattice()
            if same_lattice(reduced, target, ltol=CELL_LTOL, atol=CELL_ATOL):
                return True
    return False


def reference_rms(reference: Any, candidate: Any) -> float | None:
    """Normalised RMS displacement when ``candidate`` matches ``reference`` (the benchmark's StructureMatcher),
    else None. When either is disordered, sites match where their elements overlap and the compositions
    must agree to :data:`OCCUPANCY_TOLERANCE` in every element's atomic fraction instead of exactly."""
    from pymatgen.analysis.structure_matcher import OrderDisorderElementComparator

    from xrdsolve.generate.metrics import matched_rms, matcher, rms_if_match

    if reference.is_ordered and candidate.is_ordered:
        return rms_if_match(reference, candidate, matcher())
    ref = reference.composition.fractional_composition
    cand = candidate.composition.fractional_composition
    if {e.symbol for e in ref} != {e.symbol for e in cand}:
        return None
    if any(abs(ref[el] - cand[el]) > OCCUPANCY_TOLERANCE for el in ref):
        return None
    return matched_rms(matcher(OrderDisorderElementComparator()), reference, candidate)


def solve_case(case: RealCase, settings: BenchRealSettings) -> dict[str, Any]:
    """Solve one case from its reference's composition; the record (rank of the reference or None)."""
    from xrdsolve.conditioning.io import read_pattern
    from xrdsolve.conditioning.readers.gsas_instprm import read_instrument
    from xrdsolve.pipeline import SolveOptions, solve
    from xrdsolve.refine.params import load_cif

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        instrument = read_instrument(case.instrument)
        pattern = read_pattern(case.pattern, radiation=instrument.radiation)
        if case.limits is not None:
            pattern = pattern.cropped(*case.limits)
        reference = load_cif(case.reference)[0]
    formula = reference.composition.reduced_formula
    record: dict[str, Any] = {
        "case": case.name,
        "formula": formula,
        "reference_sites": len(reference),
        "probe": instrument.radiation.probe.value,
        "wavelength": round(float(instrument.radiation.wavelengths[0]), 5),
        "points": len(pattern.two_theta),
    }
    options = SolveOptions(
        k=settings.k, n_candidates=settings.candidates, seed=settings.seed, time_budget=settings.time_budget
    )
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solution = solve(pattern, formula, instrument=instrument, options=options, progress=False)
    except Exception as exc:  # a failing solve is recorded with its reason, and the run goes on
        log.warning("solve failed on %s: %s", case.name, exc)
        return record | {
            "seconds": round(time.perf_counter() - t0, 1),
            "error": f"{type(exc).__name__}: {exc}",
        }
    seconds = time.perf_counter() - t0
    rank, rms = None, None
    for cand in solution.candidates[: settings.k]:
        r = reference_rms(reference, cand.structure)
        if r is not None:
            rank, rms = cand.rank, round(float(r), 4)
            break
    used = solution.tried.get("indexing", {}).get("used", [])
    best = solution.candidates[0] if solution.candidates else None
    return record | {
        "seconds": round(seconds, 1),
        "reference_rank": rank,
        "rms": rms,
        "cell_found": reference_lattice_found(reference, used),
        "cells_used": len(used),
        "n_candidates": len(solution.candidates),
        "best": None
        if best is None
        else {
            "formula": best.structure.composition.reduced_formula,
            "spacegroup": best.spacegroup,
            "rwp": round(float(best.rwp), 4),
            "gof": round(float(best.gof), 3),
        },
        "messages": list(solution.messages)[:3],
        "error": None,
    }


def summarise(records: Sequence[dict[str, Any]], k: int) -> dict[str, Any]:
    """Counts over the cases: reference ranked first, within ``k``, cell found, errors."""
    ranks = [r.get("reference_rank") for r in records]
    return {
        "n": len(records),
        "rank1": sum(x == 1 for x in ranks),
        f"within{k}": sum(x is not None and x <= k for x in ranks),
        "cell_found": sum(bool(r.get("cell_found")) for r in records),
        "errors": sum(r.get("error") is not None for r in records),
        "ranks": {r["case"]: r.get("reference_rank") for r in records},
    }


def bench_real(
    settings: BenchRealSettings,
    records_path: Path,
    cases: Sequence[str] | None = None,
    root: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the real-data solves; per-case records go to ``records_path`` (JSON lines)."""
    from tqdm.auto import tqdm

    from xrdsolve.errors import UsageError

    chosen = real_cases(root)
    if cases:
        names = {c.name for c in chosen}
        unknown = [c for c in cases if c not in names]
        if unknown:
            raise UsageError(f"unknown or multiphase case(s) {unknown}; single-phase cases: {sorted(names)}")
        chosen = [c for c in chosen if c.name in cases]
    done = _read_records(records_path, settings)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    with records_path.open("a") as sink:
        for case in tqdm([c for c in chosen if c.name not in done], desc="bench real", disable=not progress):
            rec = solve_case(case, settings) | {"settings": settings.key()}
            sink.write(json.dumps(rec) + "\n")
            sink.flush()
            done[case.name] = rec
    rows = [done[c.name] for c in chosen if c.name in done]
    return {"bench": "real", **settings.key(), **summarise(rows, settings.k)}


def _read_records(path: Path, settings: BenchRealSettings) -> dict[str, dict[str, Any]]:
    """Records of an earlier run with the same settings (a torn last line is ignored)."""
    from xrdsolve.jsonio import read_records

    done = {}
    for rec in read_records(path, settings.key()):
        done[str(rec["case"])] = rec
    return done
