"""``xrdsolve bench solve``: end-to-end match rates with and without the generator."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import bench_app


@bench_app.command("solve")
def bench_solve(
    split: str = typer.Option("val", "--split", help="MP-20 split: val (development) or test (reported)."),
    n: int = typer.Option(100, "--n", help="Patterns (the first N rows of the split)."),
    k: int = typer.Option(20, "-k", help="Candidates refined and reported per pattern (match@k)."),
    candidates: int = typer.Option(96, "--candidates", help="Candidates proposed and screened per pattern."),
    time_budget: float | None = typer.Option(60.0, "--time-budget", help="Seconds per pattern (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated patterns and of the solver."),
    arms: str = typer.Option("generator,random_only", "--arms", help="generator, random_only or both."),
    records: Path = typer.Option(
        Path("out/bench_solve/records.jsonl"), "--records", help="Per-pattern records (resumes from here)."
    ),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Print one JSON line: match@1, match@k, RMS and seconds per pattern, with the generator and
    with random symmetric candidates only."""
    import torch

    from xrdsolve.bench_solve import ARMS, BenchSolveSettings
    from xrdsolve.bench_solve import bench_solve as run

    chosen = tuple(a.strip() for a in arms.split(",") if a.strip())
    unknown = [a for a in chosen if a not in ARMS]
    if unknown or not chosen:
        raise typer.BadParameter(f"--arms takes {', '.join(ARMS)}; got {arms!r}")
    if threads > 0:
        torch.set_num_threads(threads)
    settings = BenchSolveSettings(
        split=split, n=n, k=k, candidates=candidates, seed=seed, time_budget=time_budget or None
    )
    typer.echo(json.dumps(run(settings, records, arms=chosen)))
