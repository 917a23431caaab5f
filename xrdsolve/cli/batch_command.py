"""``xrdsolve batch`` and ``xrdsolve batch-report``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from xrdsolve.cli import app


@app.command("batch")
def batch(
    inputs: list[str] = typer.Argument(
        ...,
        help="Pattern files, folders (searched recursively), glob patterns or CSV manifests.",
        show_default=False,
    ),
    outdir: Path = typer.Option(
        ..., "--output", "-o", help="Output folder (results.sqlite, outputs/, results.csv)."
    ),
    task: str = typer.Option(
        "info", "--task", "-t", help="info | refine | solve | identify (or module:function)."
    ),
    composition: str | None = typer.Option(
        None, "--composition", "-c", help="Composition, e.g. 'PbSO4' (solve)."
    ),
    radiation: str | None = typer.Option(
        None,
        "--radiation",
        "-r",
        help="Radiation when the files do not say: CuKa, MoKa, 0.4137 (Å), neutron:1.594.",
    ),
    instrument: Path | None = typer.Option(
        None, "--instrument", help="GSAS instrument parameter file (.prm/.instprm)."
    ),
    model: list[Path] = typer.Option(
        [], "--model", "-m", help="Model CIF for --task refine (repeat for phases)."
    ),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (0: one per CPU core)."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on Dask: 'local' starts a LocalCluster, tcp://HOST:PORT joins a cluster.",
    ),
    retry: int = typer.Option(
        1, "--retry", min=0, help="Re-runs of an input whose worker died, before it is an error."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Re-run inputs recorded as error or timeout."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout-per-pattern", min=0.0, help="Time limit per pattern in seconds (default: none)."
    ),
    threads: int = typer.Option(1, "--threads-per-worker", min=1, help="torch/BLAS threads in each worker."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Run a task on many patterns: resumable (re-run the same command), fault-tolerant, local or on Dask."""
    from xrdsolve.batch import BatchConfig, expand_inputs, make_executor, normalise_options, run_batch
    from xrdsolve.batch.tasks import TASKS

    if task not in TASKS and ":" not in task:
        raise typer.BadParameter(
            f"expected one of {', '.join(TASKS)} or module:function", param_hint="--task"
        )
    defaults = normalise_options(
        {
            "composition": composition,
            "radiation": radiation,
            "instrument": None if instrument is None else str(instrument),
            "model": tuple(str(m) for m in model),
        }
    )
    items = expand_inputs(inputs, defaults, exclude=[outdir])
    if not items:
        raise typer.BadParameter("no pattern files found", param_hint="INPUT")
    n_workers = workers or max(1, (os.cpu_count() or 1) // threads)
    if not scheduler:
        n_workers = min(n_workers, len(items))
    config = BatchConfig(
        task=task,
        timeout=timeout or None,
        retry=retry,
        retry_failed=retry_failed,
        torch_threads=threads,
        progress=progress,
    )
    spec = make_executor(n_workers, scheduler, threads_per_worker=threads)
    try:
        summary = run_batch(items, outdir, config=config, executor=spec)
    finally:
        spec.close(wait=False)
    typer.echo(
        f"{summary.total} inputs: {summary.ok} ok, {summary.error} error, {summary.timeout} timeout, "
        f"{summary.skipped} skipped (done before), on {spec.name}, {summary.seconds:.1f} s"
        + (f"; {summary.worker_restarts} worker restart(s)" if summary.worker_restarts else "")
    )
    typer.echo(f"results: {Path(outdir) / 'results.csv'}")
    if summary.interrupted:
        print(
            f"xrdsolve: {summary.remaining} inputs left; run the same command to resume",
            file=sys.stderr,
        )
        raise typer.Abort()  # the CLI turns this into "interrupted" and exit status 130


@app.command("batch-report")
def batch_report(
    outdir: Path = typer.Argument(..., help="Output folder of a batch run.", show_default=False),
    errors: int = typer.Option(20, "--errors", help="How many failed inputs to list."),
) -> None:
    """Export results.csv (and Parquet with pyarrow) from a batch folder and print its counts."""
    from xrdsolve.batch import ResultStore, export_results
    from xrdsolve.batch.store import STORE_NAME
    from xrdsolve.errors import UsageError

    if not (outdir / STORE_NAME).is_file():
        raise UsageError(f"{outdir}: not a batch output folder (no {STORE_NAME})")
    written = export_results(outdir)
    with ResultStore(outdir / STORE_NAME, readonly=True) as store:
        counts = store.counts()
        failed = [r for r in store.rows() if r["status"] != "ok"]
    typer.echo(", ".join(f"{n} {status}" for status, n in counts.items()))
    for r in failed[:errors]:
        typer.echo(f"{r['status']}: {r['path']}: {r['error']}")
    if len(failed) > errors:
        typer.echo(f"... and {len(failed) - errors} more (see results.csv)")
    for path in written:
        typer.echo(f"written: {path}")
