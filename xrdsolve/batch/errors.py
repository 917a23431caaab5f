"""Exceptions raised by the batch runner."""

from __future__ import annotations

from xrdsolve.errors import UsageError, XrdsolveError


class BatchError(XrdsolveError):
    """Base class of errors raised by :mod:`xrdsolve.batch`."""


class BatchInputError(BatchError, UsageError):
    """An input argument (file, directory, glob or CSV manifest) that cannot be expanded."""


class TaskUnavailableError(BatchError):
    """The requested task needs a part of xrdsolve that is not installed or not written yet."""


class TaskTimeoutError(BatchError):
    """A task ran longer than the per-pattern time limit."""


class WorkerLostError(BatchError):
    """The worker process running an input died (killed by the OS, crashed in native code, ...)."""


class TaskFailedError(BatchError):
    """A task ran but produced no result for this input (e.g. no candidate structure fitted)."""
