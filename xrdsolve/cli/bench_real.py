"""``xrdsolve bench real``: where the reference structure ranks when measured patterns are solved."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import bench_app


@bench_app.command("real")
def bench_real(
    cases: str = typer.Option(
        "", "--cases", help="Comma-separated case names (default: every single-phase case)."
    ),
    k: int = typer.Option(20, "-k", help="Candidates refined and reported per pattern."),
    candidates: int = typer.Option(48, "--candidates", help="Candidates proposed and screened per pattern."),
    time_budget: float | None = typer.Option(60.0, "--time-budget", help="Seconds per pattern (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the solver."),
    records: Path = typer.Option(
        Path("out/bench_real/records.jsonl"), "--records", help="Per-case records (resumes from here)."
    ),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Solve the single-phase measured patterns of the shared real data from their reference compositions;
    print one JSON line: the reference's rank per case, how many rank first and within k, cells found."""
    import torch

    from xrdsolve.bench_real import BenchRealSettings
    from xrdsolve.bench_real import bench_real as run

    if threads > 0:
        torch.set_num_threads(threads)
    chosen = [c.strip() for c in cases.split(",") if c.strip()]
    settings = BenchRealSettings(k=k, candidates=candidates, seed=seed, time_budget=time_budget or None)
    typer.echo(json.dumps(run(settings, records, cases=chosen or None)))
