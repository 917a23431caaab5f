"""Where batch jobs run: a local process pool, a Dask cluster, or any ``concurrent.futures.Executor``.

Each backend is wrapped in an :class:`ExecutorSpec` that tells the runner how many jobs to keep in
flight (one per worker: one pattern at a time per worker bounds memory), whether a broken executor
can be replaced by a fresh one, and how to stop workers that hang.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent import futures as cf
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import BatchError

log = logging.getLogger(__name__)

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _worker_init(threads: int) -> None:
    """Process-pool worker initialiser: leave SIGINT/SIGTERM to the coordinator (Ctrl-C, ``timeout``
    and SLURM signal the whole process group; the coordinator decides and stops workers itself, with
    SIGKILL); cap native thread pools."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in _THREAD_ENV:
        os.environ[name] = str(threads)


@dataclass
class ExecutorSpec:
    """An executor plus what the runner needs to know to drive it.

    Attributes
    ----------
    executor : the current executor (replaced by :meth:`restart`).
    capacity : jobs kept in flight at once (the number of worker slots).
    factory : builds a fresh executor after a worker crash; None when the executor cannot be replaced.
    name : a short description for logs and the progress bar.
    """

    executor: Executor
    capacity: int
    factory: Callable[[], Executor] | None = None
    name: str = "executor"
    on_close: list[Callable[[], object]] = field(default_factory=list)
    owned: bool = True
    stop: Callable[[cf.Future[Any]], None] | None = None

    @property
    def restartable(self) -> bool:
        return self.factory is not None

    def restart(self) -> None:
        """Replace a broken executor: stop the old one (killing its workers) and build a new one."""
        if self.factory is None:
            raise BatchError(f"{self.name}: the executor broke and cannot be restarted")
        self.kill()
        self.executor = self.factory()

    def kill(self) -> None:
        """Stop now: cancel queued jobs and terminate local worker processes (running jobs are lost)."""
        procs = list((getattr(self.executor, "_processes", None) or {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(timeout=5)

    def close(self, *, wait: bool = True) -> None:
        """Shut the executor down (waiting for running jobs when ``wait``) and release the cluster;
        an executor the caller provided is left running."""
        if not self.owned:
            return
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=wait, cancel_futures=True)
        for fn in self.on_close:
            with contextlib.suppress(Exception):
                fn()


def process_pool(
    workers: int, *, threads_per_worker: int = 1, max_tasks_per_worker: int | None = None
) -> ExecutorSpec:
    """A local pool of ``workers`` spawned processes, one pattern at a time each; with
    ``max_tasks_per_worker`` each worker process is replaced after that many patterns (returns memory
    that a long-running worker would otherwise keep)."""
    if workers < 1:
        raise BatchError(f"--workers must be ≥ 1, got {workers}")
    ctx = multiprocessing.get_context("spawn")

    def make() -> Executor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(threads_per_worker,),
            max_tasks_per_child=max_tasks_per_worker or None,
        )

    return ExecutorSpec(make(), workers, make, f"process pool ({workers} workers)")


class DaskExecutor(Executor):
    """A ``concurrent.futures.Executor`` over a Dask ``Client``: each ``submit`` is a Dask future
    (``pure=False``) mirrored into a standard future, so the runner's ``wait``/``as_completed`` loop
    is the same for Dask and the process pool. :meth:`stop` cancels a running job and restarts the
    Dask worker that holds it (the only way to stop a thread stuck in native code)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._dask: dict[cf.Future[Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        dfut = self.client.submit(fn, *args, pure=False, **kwargs)
        out: cf.Future[Any] = cf.Future()
        out.set_running_or_notify_cancel()
        self._dask[out] = dfut

        def _done(d: Any) -> None:
            self._dask.pop(out, None)
            if out.done():
                return
            try:
                if d.status == "finished":
                    out.set_result(d.result())
                elif d.status == "cancelled":
                    out.set_exception(cf.CancelledError(f"Dask task {d.key} was cancelled"))
                else:
                    out.set_exception(d.exception() or RuntimeError(f"Dask task {d.key}: {d.status}"))
            except BaseException as exc:  # e.g. the client lost its scheduler
                if not out.done():
                    out.set_exception(exc)

        dfut.add_done_callback(_done)
        return out

    def stop(self, fut: cf.Future[Any]) -> None:
        """Cancel ``fut``'s Dask task and restart the worker running it."""
        dfut = self._dask.pop(fut, None)
        if dfut is None:
            return
        workers = [w for w, keys in self.client.processing().items() if dfut.key in keys]
        dfut.cancel()
        if workers:
            with contextlib.suppress(Exception):
                self.client.restart_workers(workers, raise_for_error=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures or not wait:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self._dask.values()))
        self._dask.clear()


def _dask_worker_setup(threads: int) -> None:
    for name in _THREAD_ENV:
        os.environ[name] = str(threads)


def dask_executor(address: str, workers: int | None = None, *, threads_per_worker: int = 1) -> ExecutorSpec:
    """A Dask distributed executor: ``address="local"`` starts a LocalCluster of ``workers`` processes
    with one thread each; ``tcp://HOST:PORT`` (or any scheduler address) connects to a running cluster
    and uses all its worker threads."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BatchError("--scheduler needs Dask: pip install 'xrdsolve[dask]'") from exc
    closers: list[Callable[[], object]] = []
    if address == "local":
        n = workers or 1
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        client = Client(cluster)
        closers = [client.close, cluster.close]
    else:
        try:
            client = Client(address, timeout=30)
        except OSError as exc:
            raise BatchError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc
        closers = [client.close]
        n = sum(client.nthreads().values()) or 1
    client.run(_dask_worker_setup, threads_per_worker)
    executor = DaskExecutor(client)
    name = f"Dask {'LocalCluster' if address == 'local' else address} ({n} worker threads)"
    return ExecutorSpec(executor, n, None, name, closers, stop=executor.stop)


def wrap_executor(executor: Executor, capacity: int) -> ExecutorSpec:
    """Use a caller-provided executor (not restarted by the runner; the caller shuts it down)."""
    return ExecutorSpec(executor, max(1, capacity), None, type(executor).__name__, owned=False)


def make_executor(
    workers: int,
    scheduler: str | None = None,
    *,
    threads_per_worker: int = 1,
    max_tasks_per_worker: int | None = None,
) -> ExecutorSpec:
    """The executor the CLI asks for: a process pool, or Dask when ``scheduler`` is given."""
    if scheduler:
        return dask_executor(scheduler, workers, threads_per_worker=threads_per_worker)
    return process_pool(
        workers, threads_per_worker=threads_per_worker, max_tasks_per_worker=max_tasks_per_worker
    )
