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
import inspect
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

from .errors import TaskUnavailableError

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
    path.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=False))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


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


def _call_with_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` passing only the keyword arguments its signature accepts (None values dropped)."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kw = {k: v for k, v in kwargs.items() if v is not None and (takes_any or k in params)}
    return fn(*args, **kw)


def task_refine(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Rietveld refinement of the given model(s) against the pattern (``xrdsolve.refine.rietveld``);
    writes ``summary.json`` (and refined CIFs when the refinement result can write them)."""
    try:
        rietveld = importlib.import_module("xrdsolve.refine.rietveld")
    except ImportError as exc:
        raise TaskUnavailableError(
            "the refine task needs xrdsolve.refine.rietveld, which is not available"
        ) from exc
    structures = _structures(options)
    t0 = time.perf_counter()
    pattern = _read(path, options)
    t_read = time.perf_counter() - t0
    result = _call_with_supported(rietveld.refine, pattern, structures, instrument=options.get("instrument"))
    summary = result.to_summary_dict() if hasattr(result, "to_summary_dict") else {}
    summary = {"task": "refine", "source": str(path), **summary}
    _write_json(outdir / "summary.json", summary)
    for name in ("write_cifs", "write_cif", "to_cif"):
        writer = getattr(result, name, None)
        if callable(writer):
            with contextlib.suppress(TypeError):
                writer(outdir)
                break
    first = structures[0]
    lattice = None
    phases = getattr(result, "structures", None) or getattr(result, "refined_structures", None)
    if phases:
        lat = phases[0].lattice
        lattice = dict(zip(("a", "b", "c"), lat.abc, strict=True)) | dict(
            zip(("alpha", "beta", "gamma"), lat.angles, strict=True)
        )
    from xrdsolve.solution import spacegroup_symbol

    return {
        "formula": first.composition.reduced_formula,
        "spacegroup": spacegroup_symbol(first)[0],
        "lattice": lattice,
        "rwp": _finite(getattr(result, "rwp", summary.get("rwp"))),
        "seconds_read": t_read,
    }


def _solve_function() -> Callable[..., Any]:
    for module, attr in (("xrdsolve.pipeline", "solve"), ("xrdsolve.solve", "solve"), ("xrdsolve", "solve")):
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        if callable(obj):
            return obj  # type: ignore[no-any-return]
    raise TaskUnavailableError("the solve task needs xrdsolve.solve(), which is not available yet")


def task_solve(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Structure solution (``xrdsolve.solve``); writes the solution folder as ``xrdsolve solve`` does."""
    solve = _solve_function()
    t0 = time.perf_counter()
    pattern = _read(path, options)
    t_read = time.perf_counter() - t0
    solution = _call_with_supported(
        solve,
        pattern,
        composition=options.get("composition"),
        instrument=options.get("instrument"),
        model=options.get("weights"),
    )
    solution.write(outdir)
    best = solution.best
    if best is None:
        return {"seconds_read": t_read}
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
