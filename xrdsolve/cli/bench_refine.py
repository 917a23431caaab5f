"""``xrdsolve bench refine``: batched vs one-at-a-time refinement of perturbed candidates of one pattern."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from . import bench_app


@bench_app.command("refine")
def bench_refine(
    n_candidates: int = typer.Option(64, "--candidates", "-n", help="Perturbed candidates refined together."),
    sequential: int = typer.Option(
        8, "--sequential", help="How many of them to also refine one at a time (the time is scaled to all)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for the perturbations and the noise."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: leave torch's default)."),
) -> None:
    """Print one JSON line: wall time of refining N perturbed candidates batched, and one at a time."""
    import numpy as np
    import torch

    from xrdsolve.refine.bench import make_benchmark_problem
    from xrdsolve.refine.rietveld import refine, refine_candidates

    if threads > 0:
        torch.set_num_threads(threads)
    pattern, truth, candidates = make_benchmark_problem(n_candidates, seed=seed)
    # one untimed refinement first: one-off set-up (imports, scattering-factor tables, symmetry analysis
    # caches) is then charged to neither arm (it used to fall on the batched one, timed first)
    refine(pattern, candidates[0])
    t0, c0 = time.perf_counter(), time.process_time()
    batched = refine_candidates(pattern, candidates)
    t_batched, c_batched = time.perf_counter() - t0, time.process_time() - c0
    n_seq = max(1, min(sequential, n_candidates))
    t0, c0 = time.perf_counter(), time.process_time()
    seq = [refine(pattern, c) for c in candidates[:n_seq]]
    t_seq_measured, c_seq_measured = time.perf_counter() - t0, time.process_time() - c0
    t_seq = t_seq_measured * n_candidates / n_seq
    c_seq = c_seq_measured * n_candidates / n_seq
    gsas2_s, gsas2_rwp = _time_gsas2(pattern, candidates[0])
    rwp_b = np.array([r.rwp for r in batched])
    rwp_s = np.array([r.rwp for r in seq])
    out = {
        "bench": "refine",
        "structure": truth.composition.reduced_formula,
        "n_candidates": n_candidates,
        "batched_s": round(t_batched, 3),
        "sequential_s": round(t_seq, 3),
        "sequential_measured_n": n_seq,
        "sequential_measured_s": round(t_seq_measured, 3),
        "speedup": round(t_seq / t_batched, 2),
        # CPU seconds of this process: the fair figure on a shared machine
        "batched_cpu_s": round(c_batched, 3),
        "sequential_cpu_s": round(c_seq, 3),
        "speedup_cpu": round(c_seq / max(c_batched, 1e-9), 2),
        "batched_converged": int(sum(r.converged for r in batched)),
        "batched_median_rwp": round(float(np.median(rwp_b)), 5),
        "max_rwp_difference_batched_vs_sequential": round(float(np.max(np.abs(rwp_b[:n_seq] - rwp_s))), 6),
        # GSAS-II's wall time for the first candidate through refine.gsas (None without GSAS-II)
        "gsas2_s": gsas2_s,
        "gsas2_rwp": gsas2_rwp,
        "rwp_first_candidate": round(float(batched[0].rwp), 5),
        "gsas2_available": _gsas2_available(),
        "torch_threads": torch.get_num_threads(),
    }
    typer.echo(json.dumps(out))


def _time_gsas2(pattern: Any, structure: Any) -> tuple[float | None, float | None]:
    """(wall seconds, Rwp) of GSAS-II refining one candidate with its default strategy; (None, None) when
    GSAS-II is not importable."""
    if not _gsas2_available():
        return None, None
    from xrdsolve.refine.gsas import refine_gsas

    t0 = time.perf_counter()
    result = refine_gsas(pattern, structure)
    return round(time.perf_counter() - t0, 3), round(float(result.rwp), 5)


def _gsas2_available() -> bool:
    """True when GSAS-II's scripting module is importable (it is not on PyPI; see refine.gsas)."""
    import importlib.util

    return importlib.util.find_spec("GSASII") is not None
