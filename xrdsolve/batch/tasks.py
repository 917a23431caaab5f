"""Batch tasks: what is done to one pattern, run inside a worker.

A task is a function ``task(path, options, outdir) -> dict`` that reads the pattern at ``path``,
writes its outputs (at least ``summary.json``) into the empty folder ``outdir`` and returns the
figures the results store keeps (``formula``, ``spacegroup``, ``lattice`` {a, b, c, alpha, beta,
gamma} in Å and degrees, ``rwp`` as a fraction, ``n_peaks``, ``seconds_read``). Registered names:
``info``, ``refine``, ``solve``, ``identify``; any ``"package.module:function"`` is accepted too, so a
user-defined task runs on the same machinery (the worker imports it by name).

:func:`run_job` is the worker entry point: it never raises for a failure of the task itself, it
returns the failure as data, so one bad file cannot take a worker or the batch down.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from ..jsonio import json_default
from .errors import TaskFailedError, TaskUnavailableError

log = logging.getLogger(__name__)

TaskFn = Callable[[Path, Mapping[str, Any], Path], dict[str, Any]]

#: Bumped when a task's output changes meaning, so resume re-runs inputs done by an older version.
TASK_VERSIONS: dict[str, str] = {"info": "1", "refine": "1", "solve": "1", "identify": "1"}


# -- helpers ---------------------------------------------------------------------------------------
def _read(path: Path, options: Mapping[str, Any]) -> Any:
    try:
        from xrdsolve.conditioning.io import read_pattern
    except ImportError as exc:  # the readers are a separate piece of work
        raise TaskUnavailableError(
            "pattern readers are not available (xrdsolve.conditioning.io is missing)"
        ) from exc
    return read_pattern(path, radiation=options.get("radiation") or None)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=json_default, allow_nan=False))


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# -- tasks -----------------------------------------------------------------------------------------
def task_info(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Read the pattern, write ``summary.json`` (format, range, step, radiation, σ source, peaks)
    and ``peaks.csv`` (2θ in degrees, d in Å when the wavelength is known, height, FWHM in degrees)."""
    from xrdsolve.conditioning.peaks import find_peaks

    t0 = time.perf_counter()
    pattern = _read(path, options)
    t_read = time.perf_counter() - t0
    tt, y = pattern.two_theta, pattern.intensity
    rad = pattern.radiation
    peaks = find_peaks(pattern)
    table = np.column_stack([peaks.two_theta, peaks.d, peaks.height, peaks.fwhm])
    np.savetxt(
        outdir / "peaks.csv",
        table,
        delimiter=",",
        fmt="%.6g",
        header="two_theta_deg,d_angstrom,height,fwhm_deg",
        comments="",
    )
    steps = np.diff(tt)
    summary = {
        "task": "info",
        "source": str(path),
        "format": pattern.meta.get("format"),
        "n_points": len(tt),
        "two_theta_min_deg": float(tt[0]),
        "two_theta_max_deg": float(tt[-1]),
        "step_deg": float(np.median(steps)),
        "radiation": None if rad is None else (rad.name or f"{rad.primary_wavelength:g} Å"),
        "wavelength_angstrom": None if rad is None else float(rad.primary_wavelength),
        "max_intensity": float(y.max()),
        "sigma_source": str(pattern.sigma_source),
        "n_peaks": len(peaks),
        "peaks_two_theta_deg": [round(float(x), 5) for x in peaks.two_theta],
    }
    _write_json(outdir / "summary.json", summary)
    return {"n_peaks": summary["n_peaks"], "seconds_read": t_read}


def _structures(options: Mapping[str, Any]) -> list[Any]:
    from pymatgen.core import Structure

    from xrdsolve.errors import UsageError

    model = options.get("model") or ()
    paths = [model] if isinstance(model, str) else list(model)
    if not paths:
        raise UsageError("the refine task needs a model: --model FILE.cif (or a 'model' manifest column)")
    out = []
    for p in paths:
        try:
            out.append(Structure.from_file(p))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise UsageError(f"{p}: cannot read the model CIF: {exc}") from exc
    return out


def _instrument(options: Mapping[str, Any]) -> Any:
    path = options.get("instrument")
    if not path:
        return None
    from xrdsolve.conditioning.readers.gsas_instprm import read_instrument

    return read_instrument(path)


def _lattice(phase_lattice: Mapping[str, Any]) -> dict[str, float | None]:
    """{a, b, c, alpha, beta, gamma} from a refined-phase lattice of Values (or floats)."""
    return {k: _finite(getattr(v, "value", v)) for k, v in phase_lattice.items() if k in _LATTICE_KEYS}


_LATTICE_KEYS = ("a", "b", "c", "alpha", "beta", "gamma")


def _save_figure(result: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    result.plot(ax=fig.add_subplot())
    fig.savefig(path, dpi=120)


def task_refine(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Rietveld refinement of the model CIF(s) against the pattern (``xrdsolve.refine.rietveld.refine``).

    Writes ``summary.json`` (the refinement summary), ``refined_<n>.cif`` per phase, ``fit.xye``
    (2θ, observed, calculated, background, difference) and ``fit.png``, as ``xrdsolve refine`` does."""
    try:
        rietveld = importlib.import_module("xrdsolve.refine.rietveld")
    except ImportError as exc:
        raise TaskUnavailableError(
            "the refine task needs xrdsolve.refine.rietveld, which is not available"
        ) from exc
    structures = _structures(options)
    instrument = _instrument(options)
    t0 = time.perf_counter()
    pattern = _read(path, options)
    t_read = time.perf_counter() - t0
    result = rietveld.refine(
        pattern, structures, instrument=instrument, radiation=options.get("radiation") or None
    )
    summary = {
        "task": "refine",
        "source": str(path),
        "models": list(_model_paths(options)),
        **result.to_summary_dict(),
    }
    _write_json(outdir / "summary.json", summary)
    for k, phase in enumerate(result.phases):
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in (phase.name or f"phase{k + 1}"))
        (outdir / f"refined_{k + 1}_{stem}.cif").write_text(result.to_cif(k))
    result.write_xye(outdir / "fit.xye")
    if options.get("plot", True):
        _save_figure(result, outdir / "fit.png")
    first = result.phases[0]
    return {
        "formula": "+".join(p.formula for p in result.phases),
        "spacegroup": first.spacegroup,
        "lattice": _lattice(first.lattice),
        "rwp": _finite(result.rwp),
        "seconds_read": t_read,
    }


def _model_paths(options: Mapping[str, Any]) -> list[str]:
    model = options.get("model") or ()
    return [model] if isinstance(model, str) else [str(m) for m in model]


#: Batch options passed to ``xrdsolve.pipeline.SolveOptions`` (same names as there).
SOLVE_OPTION_KEYS = ("k", "n_candidates", "seed", "time_budget", "use_generator")


def _solve_function() -> Callable[..., Any]:
    try:
        module = importlib.import_module("xrdsolve.pipeline")
    except ImportError as exc:
        raise TaskUnavailableError(
            "the solve task needs xrdsolve.pipeline.solve, which is not available"
        ) from exc
    return module.solve  # type: ignore[no-any-return]


def task_solve(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Structure solution (``xrdsolve.pipeline.solve``); writes the solution folder as ``xrdsolve solve``
    does (summary.json, rank01.cif, …, fit.png)."""
    solve = _solve_function()
    from xrdsolve.pipeline import SolveOptions

    opts = SolveOptions(**{k: options[k] for k in SOLVE_OPTION_KEYS if options.get(k) is not None})
    t0 = time.perf_counter()
    pattern = _read(path, options)
    t_read = time.perf_counter() - t0
    solution = solve(
        pattern,
        options.get("composition"),
        radiation=options.get("radiation") or None,
        instrument=options.get("instrument") or None,
        options=opts,
        progress=False,
    )
    solution.write(outdir)
    best = solution.best
    if best is None:
        msg = "; ".join(solution.messages) or "no candidate fitted"
        raise TaskFailedError(f"no solution: {msg}")
    return {
        "formula": best.formula,
        "spacegroup": best.spacegroup,
        "lattice": best.lattice_dict(),
        "rwp": _finite(best.rwp),
        "seconds_read": t_read,
    }


def task_identify(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Phase identification: not provided by this version of xrdsolve."""
    raise TaskUnavailableError("the identify task is not available in this version of xrdsolve")


TASKS: dict[str, TaskFn] = {
    "info": task_info,
    "refine": task_refine,
    "solve": task_solve,
    "identify": task_identify,
}

#: Tasks that run torch (their worker gets its torch thread count set).
TORCH_TASKS = frozenset({"refine", "solve"})


def resolve_task(name: str) -> TaskFn:
    """The task function of a registered name or of ``"package.module:function"``."""
    if name in TASKS:
        return TASKS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise TaskUnavailableError(f"task {name!r}: cannot import {attr} from {module}: {exc}") from exc
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    raise TaskUnavailableError(
        f"unknown task {name!r} (expected one of {', '.join(TASKS)} or module:function)"
    )


def task_version(name: str) -> str:
    return TASK_VERSIONS.get(name, "1")


def warm_up(task: str, path: str, options: Mapping[str, Any], outdir: str, torch_threads: int = 1) -> float:
    """Run ``task`` once on ``path`` into ``outdir`` and return its seconds: brings a fresh worker
    process to the state a long batch keeps it in (modules imported, tables loaded, first-call costs
    paid). Used by ``xrdsolve bench batch`` so a short benchmark measures the steady state."""
    _set_torch_threads(torch_threads)
    t0 = time.perf_counter()
    Path(outdir).mkdir(parents=True, exist_ok=True)
    resolve_task(task)(Path(path), options, Path(outdir))
    return time.perf_counter() - t0


# -- the worker side -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One unit of work sent to a worker (picklable)."""

    key: str
    path: str
    task: str
    options: Mapping[str, Any]
    partial_dir: str
    timeout: float | None = None
    torch_threads: int = 1


@dataclass
class JobResult:
    """What a worker sends back: status ``ok``/``error``/``timeout`` and the task's figures."""

    key: str
    status: str
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    seconds_task: float = 0.0
    worker: str = ""


class _Alarm(BaseException):
    """Raised by the time-limit alarm; a BaseException so a task's ``except Exception`` cannot swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_Alarm` in the calling thread after ``seconds``.

    In a process's main thread (process-pool workers) this is SIGALRM; in other threads (Dask worker
    threads) a timer thread injects the exception asynchronously. Either way it interrupts Python
    code; a call stuck inside native code is caught by the runner's hard limit instead.
    """
    if seconds is None or seconds <= 0:
        yield
        return
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def _alarm(signum: int, frame: FrameType | None) -> None:
            raise _Alarm()

        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
            signal.signal(signal.SIGALRM, previous)
        return
    import ctypes

    target = threading.get_ident()
    lock = threading.Lock()
    active = [True]

    def _inject() -> None:
        with lock:
            if active[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(_Alarm))

    timer = threading.Timer(float(seconds), _inject)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            active[0] = False
        timer.cancel()


def _set_torch_threads(n: int) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def describe_error(exc: BaseException) -> str:
    """One line for the results store: project errors by their message, others with their type."""
    from xrdsolve.errors import USER_ERRORS

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, USER_ERRORS):
        return text
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        return f"{exc.filename or ''}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {text}"


def run_job(job: Job) -> JobResult:
    """Run one job in this process; failures of the task are returned, not raised."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        fn = resolve_task(job.task)
        if job.task in TORCH_TASKS:
            _set_torch_threads(job.torch_threads)
        with _time_limit(job.timeout):
            fields = fn(Path(job.path), job.options, Path(job.partial_dir))
        return JobResult(job.key, "ok", None, dict(fields or {}), time.perf_counter() - t0, worker)
    except _Alarm:
        msg = f"timed out after {job.timeout:g} s"
        return JobResult(job.key, "timeout", msg, {}, time.perf_counter() - t0, worker)
    except MemoryError:
        return JobResult(job.key, "error", "out of memory", {}, time.perf_counter() - t0, worker)
    except Exception as exc:
        log.debug("task %s failed on %s", job.task, job.path, exc_info=True)
        return JobResult(job.key, "error", describe_error(exc), {}, time.perf_counter() - t0, worker)
