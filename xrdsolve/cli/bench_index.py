"""``xrdsolve bench index``: how often the solve's indexing finds the true cell, and how long it takes."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import bench_app


@bench_app.command("index")
def bench_index(
    split: str = typer.Option("val", "--split", help="MP-20 split: val (development) or test (reported)."),
    n: int = typer.Option(100, "--n", help="Patterns (the first N rows of the split)."),
    time_limit: float = typer.Option(
        18.0, "--time-limit", help="Seconds of indexing per pattern (the solve gives it 0.3 of its budget)."
    ),
    max_cells: int = typer.Option(3, "--max-cells", help="Cells the solve would use per pattern."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated patterns (as in bench solve)."),
    part: str = typer.Option(
        "", "--part", help="I/N: only rows with index ≡ I mod N (run N processes, one per core)."
    ),
    records: Path = typer.Option(
        Path("out/bench_index/records.jsonl"), "--records", help="Per-pattern records (resumes from here)."
    ),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Print one JSON line: patterns whose true cell is among the cells used and first, and seconds
    per pattern (median, p90, max)."""
    import torch

    from xrdsolve.bench_index import BenchIndexSettings
    from xrdsolve.bench_index import bench_index as run

    indices = None
    if part:
        try:
            i, count = (int(x) for x in part.split("/"))
        except ValueError:
            raise typer.BadParameter(f"--part takes I/N (e.g. 0/2), got {part!r}") from None
        if count < 1 or not 0 <= i < count:
            raise typer.BadParameter(f"--part takes I/N with 0 ≤ I < N, got {part!r}")
        indices = [j for j in range(n) if j % count == i]
    if threads > 0:
        torch.set_num_threads(threads)
    settings = BenchIndexSettings(split=split, n=n, time_limit=time_limit, max_cells=max_cells, seed=seed)
    typer.echo(json.dumps(run(settings, records, indices=indices)))
