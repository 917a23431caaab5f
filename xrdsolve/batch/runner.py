"""The batch runner: plan (resume), dispatch to an executor, record, survive crashes and Ctrl-C.

Only this coordinating process writes the results store; workers return :class:`JobResult` data.
An input is skipped when its row is ``ok`` with the same content hash (SHA-256 of the file) and
options hash; ``error``/``timeout`` rows are retried only with ``retry_failed``.

Fault handling
--------------
* A task that raises: that input's ``error`` row with the message; the batch goes on.
* A worker process that dies (OOM killer, segfault, ``kill``): the local pool breaks and every job
  in flight fails with it. The runner restarts the pool and re-runs those inputs one at a time, so a
  crash is pinned on the input that causes it; that input is retried ``retry`` times and then
  recorded as an ``error``. Innocent neighbours finish normally.
* A job running longer than ``timeout``: the worker's own alarm returns a ``timeout`` row; a job
  stuck in native code past ``1.5 × timeout + 10 s`` has its worker killed (local pool) or is
  abandoned (Dask) and is recorded as ``timeout``.
* SIGINT (Ctrl-C): stop submitting, let running jobs finish and record them, export, return; a
  second Ctrl-C, or SIGTERM, kills the workers at once. Either way a later run resumes where this
  one stopped.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures as cf
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from tqdm.auto import tqdm

from .errors import BatchError
from .executors import ExecutorSpec
from .inputs import BatchInput
from .store import (
    OUTPUTS_DIR,
    STORE_NAME,
    ResultStore,
    clean_partials,
    commit_output,
    new_partial_dir,
    options_hash,
    output_name,
    sha256_file,
)
from .tasks import Job, JobResult, describe_error, resolve_task, task_version

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
POLL_S = 0.25
#: Restarts of the worker pool in a row, with no job finishing in between, before the batch gives up.
MAX_IDLE_RESTARTS = 5


@dataclass(frozen=True)
class BatchConfig:
    """How to run a batch.

    Attributes
    ----------
    task : task name (``info``, ``refine``, ``solve``, ``identify``) or ``module:function``.
    timeout : per-pattern time limit in seconds (None: no limit).
    retry : how many times an input whose worker died is re-run before it is recorded as an error.
    retry_failed : re-run inputs whose stored row is ``error`` or ``timeout``.
    torch_threads : torch/BLAS threads in each worker.
    progress : show a progress bar (tqdm, on stderr).
    handle_sigint : install the two-stage Ctrl-C handler while running (main thread only).
    """

    task: str = "info"
    timeout: float | None = None
    retry: int = 1
    retry_failed: bool = False
    torch_threads: int = 1
    progress: bool = True
    handle_sigint: bool = True


@dataclass
class BatchSummary:
    """What a run did. ``ok``/``error``/``timeout`` count rows written in this run."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    error: int = 0
    timeout: int = 0
    interrupted: bool = False
    worker_restarts: int = 0
    seconds: float = 0.0
    remaining: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.error + self.timeout


@dataclass
class _Item:
    inp: BatchInput
    content_hash: str
    options_hash: str
    crashes: int = 0
    lost: int = 0


@dataclass
class _Flight:
    item: _Item
    job: Job
    submitted: float
    alone: bool


class _Interrupt:
    """Stop requests: the first SIGINT asks for a clean stop (running jobs finish), a second SIGINT or
    a SIGTERM (what SLURM and ``kill`` send) for an immediate one."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count = 2 if signum == signal.SIGTERM else self.count + 1
        if self.count == 1:
            log.warning("interrupted: finishing the running patterns (Ctrl-C again to stop now)")

    @contextlib.contextmanager
    def installed_in_main_thread(self, enabled: bool) -> Iterator[_Interrupt]:
        if enabled and threading.current_thread() is threading.main_thread():
            for sig in (int(signal.SIGINT), int(signal.SIGTERM)):
                self._previous[sig] = signal.signal(sig, self)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous.clear()


@contextlib.contextmanager
def outdir_lock(outdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``OUTDIR`` so two batches never write the same store."""
    outdir.mkdir(parents=True, exist_ok=True)
    fh = (outdir / LOCK_NAME).open("a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BatchError(f"{outdir}: another batch is running in this folder") from exc
        yield
    finally:
        fh.close()


def _lattice_columns(lattice: Any) -> dict[str, Any]:
    if not lattice:
        return {}
    return {k: lattice.get(k) for k in ("a", "b", "c", "alpha", "beta", "gamma")}


class BatchRunner:
    """Run one batch into ``outdir`` on ``spec`` (see :func:`run_batch`)."""

    def __init__(
        self,
        inputs: Sequence[BatchInput],
        outdir: Path,
        spec: ExecutorSpec,
        config: BatchConfig,
        *,
        progress_file: TextIO | None = None,
    ) -> None:
        self.inputs = list(inputs)
        self.outdir = Path(outdir).resolve()
        self.spec = spec
        self.config = config
        self.progress_file = progress_file
        self.summary = BatchSummary(total=len(self.inputs))
        self.store: ResultStore | None = None
        self.bar: Any = None
        self._restarts_without_progress = 0

    # -- planning --------------------------------------------------------------------------------
    def _plan(self, store: ResultStore) -> list[_Item]:
        resolve_task(self.config.task)  # fail fast on an unknown or unimportable task
        version = task_version(self.config.task)
        todo: list[_Item] = []
        hashes: dict[Any, str] = {}
        for inp in self.inputs:
            key = (self.config.task, tuple(sorted((k, str(v)) for k, v in inp.options.items())))
            if key not in hashes:
                hashes[key] = options_hash(self.config.task, inp.options, version)
            ohash = hashes[key]
            try:
                chash = sha256_file(inp.path)
            except OSError as exc:
                self._record_failure(
                    _Item(inp, "", ohash), "error", f"{inp.path}: {exc.strerror or exc}", None, 0.0
                )
                continue
            row = store.get(inp.key)
            if row is not None and row.content_hash == chash and row.options_hash == ohash:
                if row.status == "ok" or not self.config.retry_failed:
                    self.summary.skipped += 1
                    continue
            todo.append(_Item(inp, chash, ohash))
        return todo

    # -- recording -------------------------------------------------------------------------------
    def _base_row(self, item: _Item, status: str) -> dict[str, Any]:
        return {
            "path": item.inp.key,
            "status": status,
            "task": self.config.task,
            "content_hash": item.content_hash or None,
            "options_hash": item.options_hash,
            "options": dict(item.inp.options),
            "attempts": 1 + item.crashes + item.lost,
        }

    def _record_failure(
        self, item: _Item, status: str, message: str, res: JobResult | None, wall: float
    ) -> None:
        assert self.store is not None
        row = self._base_row(item, status)
        row.update(error=message, seconds_wall=wall)
        if res is not None:
            row.update(seconds_task=res.seconds_task, worker=res.worker)
        self.store.record(row)
        if status == "timeout":
            self.summary.timeout += 1
        else:
            self.summary.error += 1
        log.info("%s: %s: %s", item.inp.path, status, message)
        self._tick()

    def _record_result(self, flight: _Flight, res: JobResult) -> None:
        assert self.store is not None
        item = flight.item
        wall = time.monotonic() - flight.submitted
        partial = Path(flight.job.partial_dir)
        if res.status != "ok":
            shutil.rmtree(partial, ignore_errors=True)
            self._record_failure(item, res.status, res.error or "failed", res, wall)
            return
        name = output_name(item.inp.key)
        try:
            commit_output(partial, self.outdir / OUTPUTS_DIR / name)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            self._record_failure(item, "error", f"cannot store the output folder: {exc}", res, wall)
            return
        f = res.fields
        row = self._base_row(item, "ok")
        row.update(
            formula=f.get("formula"),
            spacegroup=f.get("spacegroup"),
            rwp=f.get("rwp"),
            n_peaks=f.get("n_peaks"),
            seconds_read=f.get("seconds_read"),
            seconds_task=res.seconds_task,
            seconds_wall=wall,
            output_dir=f"{OUTPUTS_DIR}/{name}",
            worker=res.worker,
            **_lattice_columns(f.get("lattice")),
        )
        self.store.record(row)
        self.summary.ok += 1
        self._tick()

    def _tick(self) -> None:
        self._restarts_without_progress = 0
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                ok=self.summary.ok,
                failed=self.summary.failed,
                remaining=self.bar.total - self.bar.n,
                refresh=False,
            )

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> BatchSummary:
        t_start = time.monotonic()
        with outdir_lock(self.outdir), ResultStore(self.outdir / STORE_NAME) as store:
            self.store = store
            n_stale = clean_partials(self.outdir)
            if n_stale:
                log.info("removed %d partial outputs of an interrupted run", n_stale)
            todo = self._plan(store)
            if self.summary.skipped:
                log.info("%d inputs already done (same content and options): skipped", self.summary.skipped)
            interrupt = _Interrupt()
            self.bar = tqdm(
                total=len(todo) + self.summary.error,
                initial=self.summary.error,
                desc="batch",
                unit="pattern",
                disable=not self.config.progress,
                file=self.progress_file,
                dynamic_ncols=True,
            )
            try:
                with interrupt.installed_in_main_thread(self.config.handle_sigint):
                    self._loop(todo, interrupt)
            finally:
                self.bar.close()
                self.store = None
        self.summary.seconds = time.monotonic() - t_start
        return self.summary

    def _submit(self, item: _Item, alone: bool) -> tuple[cf.Future[JobResult], _Flight]:
        name = output_name(item.inp.key)
        partial = new_partial_dir(self.outdir, name)
        job = Job(
            key=item.inp.key,
            path=str(item.inp.path),
            task=self.config.task,
            options=dict(item.inp.options),
            partial_dir=str(partial),
            timeout=self.config.timeout,
            torch_threads=self.config.torch_threads,
        )
        from .tasks import run_job

        try:
            fut = self.spec.executor.submit(run_job, job)
        except BaseException:  # not submitted: leave no partial folder behind
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return fut, _Flight(item, job, time.monotonic(), alone)

    def _loop(self, todo: list[_Item], interrupt: _Interrupt) -> None:
        pending: collections.deque[_Item] = collections.deque(todo)
        suspects: collections.deque[_Item] = collections.deque()
        inflight: dict[cf.Future[JobResult], _Flight] = {}
        cfg = self.config
        hard_limit = None if not cfg.timeout else 1.5 * cfg.timeout + 10.0

        while pending or suspects or inflight:
            if interrupt.count >= 2:
                self.spec.kill()
                for fl in inflight.values():
                    shutil.rmtree(fl.job.partial_dir, ignore_errors=True)
                self.summary.interrupted = True
                self.summary.remaining = len(pending) + len(suspects) + len(inflight)
                return
            stopping = interrupt.count >= 1
            if stopping and not inflight:
                break
            # submit: suspects of a crash run alone; otherwise keep every worker slot busy
            if not stopping:
                try:
                    # an item leaves its queue only once submitted: a pool that broke between two
                    # polls raises in _submit, and the item must stay queued for the restarted pool
                    if suspects:
                        if not inflight:
                            fut, fl = self._submit(suspects[0], alone=True)
                            suspects.popleft()
                            inflight[fut] = fl
                    else:
                        while pending and len(inflight) < self.spec.capacity:
                            fut, fl = self._submit(pending[0], alone=self.spec.capacity == 1)
                            pending.popleft()
                            inflight[fut] = fl
                except (cf.BrokenExecutor, RuntimeError) as exc:  # pool broke between two polls
                    log.warning("executor unusable (%s): restarting", exc)
                    self._restart()
                    continue
            done, _ = cf.wait(list(inflight), timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
            broken: list[_Flight] = []
            for fut in done:
                fl = inflight.pop(fut)
                try:
                    res = fut.result()
                except cf.BrokenExecutor:
                    broken.append(fl)
                    continue
                except (cf.CancelledError, Exception) as exc:  # Dask KilledWorker, lost connection, ...
                    self._worker_lost(fl, exc, pending)
                    continue
                self._record_result(fl, res)
            if broken:
                # every job in flight dies with the pool: collect them all, then restart
                for fut, fl in list(inflight.items()):
                    inflight.pop(fut)
                    try:
                        res = fut.result(timeout=10)
                    except BaseException:
                        broken.append(fl)
                    else:  # finished just before the pool broke
                        self._record_result(fl, res)
                self._pool_broke(broken, suspects)
            if hard_limit is not None:
                now = time.monotonic()
                overdue = [f for f, fl in inflight.items() if now - fl.submitted > hard_limit]
                if overdue:
                    self._hard_timeout(overdue, inflight, pending)
        if interrupt.count >= 1:
            self.summary.interrupted = True
            self.summary.remaining = len(pending) + len(suspects)

    def _restart(self) -> None:
        self._restarts_without_progress += 1
        if self._restarts_without_progress > MAX_IDLE_RESTARTS:
            raise BatchError(
                f"{self.spec.name}: workers keep failing before finishing any pattern "
                f"({MAX_IDLE_RESTARTS} restarts in a row); see the log above"
            )
        self.spec.restart()
        self.summary.worker_restarts += 1

    def _pool_broke(self, flights: list[_Flight], suspects: collections.deque[_Item]) -> None:
        alone = len(flights) == 1 and flights[0].alone
        log.warning("a worker process died with %d pattern(s) in flight: restarting the pool", len(flights))
        for fl in flights:
            shutil.rmtree(fl.job.partial_dir, ignore_errors=True)
            item = fl.item
            if alone:
                item.crashes += 1
                if item.crashes > self.config.retry:
                    self._record_failure(
                        item,
                        "error",
                        f"the worker process died while processing this input ({item.crashes} times; "
                        "killed by the OS, out of memory, or a crash in native code)",
                        None,
                        time.monotonic() - fl.submitted,
                    )
                    continue
            suspects.append(item)
        self._restart()

    def _worker_lost(self, fl: _Flight, exc: BaseException, pending: collections.deque[_Item]) -> None:
        shutil.rmtree(fl.job.partial_dir, ignore_errors=True)
        item = fl.item
        item.lost += 1
        if item.lost > self.config.retry:
            self._record_failure(
                item,
                "error",
                f"the worker running this input was lost: {describe_error(exc)}",
                None,
                time.monotonic() - fl.submitted,
            )
        else:
            log.warning("%s: worker lost (%s): retrying", item.inp.path, describe_error(exc))
            pending.appendleft(item)

    def _hard_timeout(
        self,
        overdue: list[cf.Future[JobResult]],
        inflight: dict[cf.Future[JobResult], _Flight],
        pending: collections.deque[_Item],
    ) -> None:
        stoppable = self.spec.restartable or self.spec.stop is not None
        how = "worker stopped" if stoppable else "abandoned; its worker may stay busy"
        for fut in overdue:
            fl = inflight.pop(fut)
            if self.spec.stop is not None:
                self.spec.stop(fut)
            fut.cancel()
            shutil.rmtree(fl.job.partial_dir, ignore_errors=True)
            self._record_failure(
                fl.item,
                "timeout",
                f"timed out after {self.config.timeout:g} s ({how})",
                None,
                time.monotonic() - fl.submitted,
            )
        if self.spec.restartable:
            # the stuck worker can only be stopped with its pool: re-queue the innocent jobs
            for fut, fl in list(inflight.items()):
                shutil.rmtree(fl.job.partial_dir, ignore_errors=True)
                pending.appendleft(fl.item)
                inflight.pop(fut)
            self._restart()


def run_batch(
    inputs: Sequence[BatchInput],
    outdir: str | os.PathLike[str],
    *,
    config: BatchConfig | None = None,
    executor: ExecutorSpec | cf.Executor | None = None,
    workers: int = 1,
    export: bool = True,
    progress_file: TextIO | None = None,
) -> BatchSummary:
    """Run ``config.task`` on every input, recording results in ``outdir/results.sqlite``.

    ``executor`` may be an :class:`ExecutorSpec` (see :mod:`xrdsolve.batch.executors`), any
    ``concurrent.futures.Executor`` (run ``workers`` jobs at a time; not restarted after a crash;
    left running), or None for a local process pool of ``workers`` processes. Unless ``export`` is
    False, ``results.csv`` (and ``results.parquet`` when pyarrow is installed) are written at the end,
    also after an interruption.
    """
    from .executors import process_pool, wrap_executor

    config = config or BatchConfig()
    out = Path(outdir)
    if executor is None:
        spec = process_pool(workers, threads_per_worker=config.torch_threads)
    elif isinstance(executor, ExecutorSpec):
        spec = executor
    else:
        spec = wrap_executor(executor, workers)
    runner = BatchRunner(inputs, out, spec, config, progress_file=progress_file)
    try:
        summary = runner.run()
    finally:
        if executor is None:
            spec.close(wait=False)
    if export:
        from .export import export_results

        export_results(out)
    return summary
