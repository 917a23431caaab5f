"""``xrdsolve bench solve``: end-to-end match rates of :func:`xrdsolve.solve` on held-out MP-20 rows.

Patterns are simulated (Cu Kα1/Kα2, 2θ 5–90°) with randomised instrument effects from MP-20 rows
the generator never saw in training (``val`` for development, ``test`` for reported figures). Each
is solved from its reduced formula (Z is the pipeline's business) twice: with the generator and with
random symmetric candidates only, so the model's contribution is visible. A refined candidate
matches when StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) says so; match@1 looks at the
top-ranked candidate, match@k at all k reported.

Per-pattern records are appended to a JSON-lines file as they finish, so an interrupted run resumes
where it stopped and a finished pattern is never solved twice.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The two arms of the benchmark: pipeline with the generator, and random symmetric candidates only.
ARMS = ("generator", "random_only")


@dataclass(frozen=True)
class BenchSolveSettings:
    """What is benchmarked. Times in seconds."""

    split: str = "val"
    n: int = 100
    k: int = 20
    candidates: int = 96
    seed: int = 0
    time_budget: float | None = 60.0

    def key(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "k": self.k,
            "candidates": self.candidates,
            "seed": self.seed,
            "time_budget": self.time_budget,
        }


def solve_one(pattern: Any, truth: Any, arm: str, settings: BenchSolveSettings) -> dict[str, Any]:
    """Solve ``pattern`` (of the known ``truth`` structure) in one arm; the per-pattern record."""
    from xrdsolve.generate.metrics import matcher, rms_if_match
    from xrdsolve.pipeline import SolveOptions, solve

    options = SolveOptions(
        k=settings.k,
        n_candidates=settings.candidates,
        seed=settings.seed,
        time_budget=settings.time_budget,
        use_generator=arm == "generator",
    )
    t0 = time.perf_counter()
    error = None
    ranks: list[int] = []
    rms: list[float] = []
    sources: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solution = solve(pattern, truth.composition.reduced_formula, options=options, progress=False)
        sm = matcher()
        for cand in solution.candidates[: settings.k]:
            r = rms_if_match(truth, cand.structure, sm)
            if r is not None:
                ranks.append(cand.rank)
                rms.append(r)
                sources.append(str(cand.provenance.get("source", "?")))
        n_candidates = len(solution.candidates)
        best_gof = round(float(solution.candidates[0].gof), 3) if solution.candidates else None
        widened = bool(solution.tried.get("widening", {}).get("ran", False))
    except Exception as exc:  # a failing solve is a miss, recorded with its reason
        log.warning("solve failed on %s: %s", truth.composition.reduced_formula, exc)
        error = f"{type(exc).__name__}: {exc}"
        n_candidates, best_gof, widened = 0, None, False
    return {
        "arm": arm,
        "formula": truth.composition.reduced_formula,
        "n_atoms": len(truth),
        "seconds": round(time.perf_counter() - t0, 2),
        "first_match_rank": min(ranks) if ranks else None,
        "rms": round(rms[int(np.argmin(ranks))], 4) if ranks else None,
        "match_source": sources[int(np.argmin(ranks))] if ranks else None,
        "n_candidates": n_candidates,
        "best_gof": best_gof,
        "widened": widened,
        "error": error,
    }


def summarise(records: Iterable[dict[str, Any]], k: int) -> dict[str, Any]:
    """match@1, match@k, mean RMS of matches and seconds per pattern (median, p90) of one arm."""
    rows = list(records)
    if not rows:
        return {"n": 0}
    ranks = [r["first_match_rank"] for r in rows]
    seconds = np.array([r["seconds"] for r in rows], dtype=float)
    rms = [r["rms"] for r in rows if r["rms"] is not None]
    return {
        "n": len(rows),
        "match@1": round(sum(x == 1 for x in ranks) / len(rows), 4),
        f"match@{k}": round(sum(x is not None and x <= k for x in ranks) / len(rows), 4),
        "rms": round(float(np.mean(rms)), 4) if rms else None,
        "median_s": round(float(np.median(seconds)), 1),
        "p90_s": round(float(np.percentile(seconds, 90)), 1),
        "errors": sum(r["error"] is not None for r in rows),
    }


def benchmark_patterns(split: str, n: int, seed: int) -> tuple[list[Any], list[Any], list[Any]]:
    """The benchmark's rows (the first ``n`` of MP-20 ``split``, val or test), their structures and their
    patterns simulated with randomised instrument effects (pattern i depends only on ``seed``, i and its
    structure)."""
    from xrdsolve.generate.bench import simulate_patterns
    from xrdsolve.generate.data import load_split

    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    recs = load_split("mp20", split)[:n]
    truth = [r.structure for r in recs]
    return recs, truth, simulate_patterns(truth, seed=seed)


def bench_solve(
    settings: BenchSolveSettings,
    records_path: Path,
    arms: tuple[str, ...] = ARMS,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the benchmark; per-pattern records go to ``records_path`` (JSON lines)."""
    from tqdm.auto import tqdm

    recs, truth, patterns = benchmark_patterns(settings.split, settings.n, settings.seed)
    done = _read_records(records_path, settings)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    todo = [(i, arm) for i in range(len(truth)) for arm in arms if (i, arm) not in done]
    with records_path.open("a") as sink:
        for i, arm in tqdm(todo, desc="bench solve", disable=not progress):
            rec = solve_one(patterns[i], truth[i], arm, settings) | {"index": i, "id": recs[i].id}
            rec["settings"] = settings.key()
            sink.write(json.dumps(rec) + "\n")
            sink.flush()
            done[(i, arm)] = rec
    out: dict[str, Any] = {"bench": "solve", **settings.key(), "n": len(truth)}
    for arm in arms:
        rows = [done[(i, arm)] for i in range(len(truth)) if (i, arm) in done]
        out[arm] = summarise(rows, settings.k)
    out["matcher"] = {"stol": 0.5, "angle_tol": 10, "ltol": 0.3}
    return out


def _read_records(path: Path, settings: BenchSolveSettings) -> dict[tuple[int, str], dict[str, Any]]:
    """Records of an earlier run with the same settings (a torn last line is ignored)."""
    from xrdsolve.jsonio import read_records

    done = {}
    for rec in read_records(path, settings.key()):
        done[(int(rec["index"]), str(rec["arm"]))] = rec
    return done
