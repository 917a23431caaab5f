"""``xrdsolve batch`` and ``xrdsolve batch-report``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from xrdsolve.cli import app, bench_app


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
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed of --task solve (same seed, same result)."
    ),
    k: int | None = typer.Option(None, "-k", help="Candidates refined fully and reported (solve)."),
    candidates: int | None = typer.Option(
        None, "--candidates", help="Candidate structures proposed (solve)."
    ),
    time_budget: float | None = typer.Option(
        None, "--time-budget", help="Seconds per pattern for solve's stages."
    ),
    no_generator: bool = typer.Option(
        False, "--no-generator", help="Random symmetric candidates only (solve)."
    ),
    no_plot: bool = typer.Option(False, "--no-plot", help="Skip fit.png (refine): faster."),
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
    recycle: int = typer.Option(
        0,
        "--recycle-after",
        min=0,
        help="Replace each worker process after N patterns (0: never; local pool).",
    ),
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
    if task == "solve":
        defaults.update(
            {
                key: value
                for key, value in (
                    ("seed", seed),
                    ("k", k),
                    ("n_candidates", candidates),
                    ("time_budget", time_budget),
                    ("use_generator", False if no_generator else None),
                )
                if value is not None
            }
        )
    if task == "refine" and no_plot:
        defaults["plot"] = False
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
    spec = make_executor(
        n_workers, scheduler, threads_per_worker=threads, max_tasks_per_worker=recycle or None
    )
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


def _example(name: str) -> Path:
    import xrdsolve

    return Path(xrdsolve.__file__).resolve().parents[1] / "data" / "examples" / name


@bench_app.command("batch")
def bench_batch(
    n: int = typer.Option(8, "-n", min=1, help="Patterns per run."),
    pattern: Path | None = typer.Option(
        None, "--pattern", help="Pattern (default data/examples/demo_pattern.xye)."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Model CIF (default data/examples/rutile_TiO2.cif)."
    ),
    task: str = typer.Option("refine", "--task", help="Task to time (refine or info)."),
) -> None:
    """Batch throughput (patterns/min with 1 and 2 workers) and the batch machinery's overhead versus
    calling the same single-pattern task directly in a loop. Prints one JSON line."""
    import json
    import shutil
    import statistics
    import tempfile
    import time

    from xrdsolve.batch import BatchConfig, expand_inputs, normalise_options, process_pool, run_batch
    from xrdsolve.batch.store import ResultStore
    from xrdsolve.batch.tasks import resolve_task, warm_up
    from xrdsolve.errors import UsageError

    pattern = pattern or _example("demo_pattern.xye")
    model = model or _example("rutile_TiO2.cif")
    for p in (pattern, model):
        if not p.is_file():
            raise UsageError(f"{p}: not found (give --pattern and --model)")
    options = normalise_options({"model": (str(model),), "plot": False} if task == "refine" else {})
    fn = resolve_task(task)
    figures: dict[str, Any] = {"bench": "batch", "task": task, "n_patterns": n, "pattern": pattern.name}
    with tempfile.TemporaryDirectory(prefix="xrdsolve-bench-batch-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "in").mkdir()
        copies = [tmp / "in" / f"p{i:03d}{pattern.suffix}" for i in range(n)]
        for c in copies:
            shutil.copyfile(pattern, c)
        # direct loop in this process (modules imported first, as a long-lived script would have them)
        import torch

        torch.set_num_threads(1)
        if task == "refine":
            import xrdsolve.conditioning.io
            import xrdsolve.refine.rietveld  # noqa: F401
        # one untimed call first: a long-lived script pays first-call costs once, as a warm worker does
        warm_s = warm_up(task, str(copies[0]), options, str(tmp / "warm" / "direct"))
        figures["first_call_s"] = round(warm_s, 3)
        t0 = time.perf_counter()
        for c in copies:
            out = tmp / "direct" / c.stem
            out.mkdir(parents=True)
            fn(c, options, out)
        t_direct = time.perf_counter() - t0
        figures["direct_s_per_pattern"] = round(t_direct / n, 3)
        figures["direct_patterns_per_min"] = round(60 * n / t_direct, 2)
        inputs = expand_inputs([tmp / "in"], options)
        config = BatchConfig(task=task, progress=False, torch_threads=1)
        for workers in (1, 2):
            outdir = tmp / f"batch{workers}"
            spec = process_pool(workers)
            # warm every worker (imports, first-call costs): in a batch of thousands this is paid once
            t0 = time.perf_counter()
            warm = [
                spec.executor.submit(
                    warm_up, task, str(copies[0]), options, str(tmp / "warm" / f"w{workers}_{i}")
                )
                for i in range(workers)
            ]
            for f in warm:
                f.result()
            figures[f"workers{workers}_warm_up_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            try:
                summary = run_batch(inputs, outdir, config=config, executor=spec)
            finally:
                spec.close(wait=False)
            t_batch = time.perf_counter() - t0
            if summary.ok != n:
                raise UsageError(f"bench batch: {summary.failed} of {n} patterns failed; see {outdir}")
            with ResultStore(outdir / "results.sqlite", readonly=True) as store:
                rows = store.rows()
            figures[f"workers{workers}_patterns_per_min"] = round(60 * n / t_batch, 2)
            if workers == 1:
                per = [r["seconds_wall"] - r["seconds_task"] for r in rows]
                figures["overhead_fraction_vs_direct"] = round(t_batch / t_direct - 1.0, 4)
                figures["overhead_per_pattern_s"] = round(statistics.median(per), 4)
                figures["overhead_per_pattern_fraction"] = round(statistics.median(per) / (t_direct / n), 4)
                figures["workers1_task_s_per_pattern"] = round(
                    statistics.median(r["seconds_task"] for r in rows), 3
                )
        figures["speedup_2_vs_1_workers"] = round(
            float(figures["workers2_patterns_per_min"]) / float(figures["workers1_patterns_per_min"]),
            3,  # type: ignore[arg-type]
        )
    typer.echo(json.dumps(figures))
