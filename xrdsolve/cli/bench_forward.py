"""``xrdsolve bench forward``: forward-model throughput against pymatgen's XRDCalculator, one JSON line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from . import bench_app


def _default_structures() -> Path:
    root = Path(
        os.environ.get("XRDSOLVE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
    )
    return root / "structures" / "mp20_subset" / "train.csv"


@bench_app.command("forward")
def bench_forward(
    n: int = typer.Option(256, "--n", help="Number of structures (≤ 20 atoms)."),
    structures: Path | None = typer.Option(
        None, "--structures", help="CSV with a 'cif' column (default: shared mp20_subset/train.csv)."
    ),
    dtype: str = typer.Option("float32", "--dtype", help="float32 (training-time) or float64 (refinement)."),
    chunk: int = typer.Option(64, "--chunk", help="Structures per forward call (bounds memory)."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: leave torch's default)."),
    workers: int = typer.Option(
        0, "--workers", help="Chunks simulated in parallel, one torch thread each (0: torch's thread count)."
    ),
    n_reference: int = typer.Option(
        64, "--n-reference", help="Structures timed with pymatgen (rate extrapolated)."
    ),
    compiled: bool = typer.Option(
        False,
        "--compile/--no-compile",
        help="torch.compile the elementwise kernels (compile time is reported, excluded from the rate).",
    ),
) -> None:
    """Patterns/s of the full profile (5–90°, 0.01°, Cu Kα1+Kα2) vs pymatgen sticks, errors, peak memory.

    ``ratio`` compares wall-clock rates (ours may use several threads, pymatgen one); ``cpu_ratio`` compares
    process CPU time, which is steadier on a shared machine.
    """
    import resource
    import time
    import warnings

    import numpy as np
    import pandas as pd
    import torch
    from pymatgen.core import Structure

    from xrdsolve.errors import UsageError
    from xrdsolve.refine.physics import Instrument, reflection_tables, simulate_structures
    from xrdsolve.refine.physics.compile import set_compile
    from xrdsolve.refine.physics.reference import compare_sticks, pymatgen_sticks
    from xrdsolve.refine.radiation import Radiation

    path = structures or _default_structures()
    if not path.is_file():
        raise UsageError(f"structure CSV not found: {path} (give --structures or set XRDSOLVE_SHARED_DATA)")
    if dtype not in ("float32", "float64"):
        raise UsageError("--dtype must be float32 or float64")
    if threads > 0:
        torch.set_num_threads(threads)
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    df = pd.read_csv(path)
    structs: list[Structure] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cif in df["cif"]:
            s = Structure.from_str(cif, fmt="cif")
            if len(s) <= 20:
                structs.append(s)
            if len(structs) == n:
                break
    if len(structs) < n:
        raise UsageError(f"only {len(structs)} structures of ≤ 20 atoms in {path}")

    grid = torch.arange(5.0, 90.0 + 1e-9, 0.01, dtype=torch.float64)
    inst = Instrument(Radiation.preset("CuKa"))

    cpu = {"ours": float("inf")}

    n_workers = workers if workers > 0 else torch.get_num_threads()

    def run_ours() -> float:
        c0 = time.process_time()
        t0 = time.perf_counter()
        profile = {"X": 2.0, "Y": 3.0, "background": [10.0, 2.0]}
        simulate_structures(structs, grid, inst, profile, chunk=chunk, workers=n_workers, dtype=tdtype)
        cpu["ours"] = min(cpu["ours"], time.process_time() - c0)
        return time.perf_counter() - t0

    set_compile(compiled)
    t_warm = run_ours()  # warm-up (tables, allocator; compilation with --compile)
    t_ours = min(run_ours(), run_ours())
    set_compile(False)

    lam = 1.540593
    n_ref = min(n_reference, n)

    def run_reference() -> tuple[float, float, list]:
        c0 = time.process_time()
        t0 = time.perf_counter()
        sticks = [pymatgen_sticks(s, lam, (5.0, 90.0)) for s in structs[:n_ref]]
        return (time.perf_counter() - t0) * n / n_ref, (time.process_time() - c0) * n / n_ref, sticks

    # like ours: warmed up, the faster of two timed runs (pymatgen loads its tables on first use)
    pymatgen_sticks(structs[0], lam, (5.0, 90.0))
    (t_ref, cpu_ref, ref), (t_ref2, cpu_ref2, _) = run_reference(), run_reference()
    t_ref, cpu_ref = min(t_ref, t_ref2), min(cpu_ref, cpu_ref2)
    ref += [pymatgen_sticks(s, lam, (5.0, 90.0)) for s in structs[n_ref:]]

    tables = reflection_tables(
        structs, Instrument(Radiation.monochromatic(lam), form_factors="pymatgen"), 90.0, 5.0
    )
    cmps = [compare_sticks(t, r) for t, r in zip(tables, ref, strict=True)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    figures = {
        "bench": "forward",
        "n_structures": n,
        "dtype": dtype,
        "torch_threads": torch.get_num_threads(),
        "workers": n_workers,
        "grid_points": int(grid.numel()),
        "ours_patterns_per_s": round(n / t_ours, 2),
        "pymatgen_sticks_per_s": round(n / t_ref, 2),
        "ratio": round(t_ref / t_ours, 3),
        "cpu_ratio": round(cpu_ref / cpu["ours"], 3),
        "ours_cpu_ms_per_pattern": round(1000 * cpu["ours"] / n, 3),
        "pymatgen_cpu_ms_per_pattern": round(1000 * cpu_ref / n, 3),
        "compiled": compiled,
        "warmup_s": round(t_warm, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "max_position_error_deg": float(np.max([c.max_position_error for c in cmps])),
        "max_intensity_error_pct": float(np.max([c.max_intensity_error for c in cmps])),
        "unmatched_peaks": int(sum(c.unmatched for c in cmps)),
        "peak_rss_mb": round(peak_mb, 1),
    }
    typer.echo(json.dumps(figures))
