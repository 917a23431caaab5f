"""Exceptions raised by the top-level xrdsolve package, and the set the CLI reports as user errors."""

from __future__ import annotations

from xrdsolve.conditioning.errors import ConditioningError
from xrdsolve.refine.errors import RefineError


class XrdsolveError(Exception):
    """Base class of errors raised by xrdsolve's pipeline, generator and CLI."""


class UsageError(XrdsolveError, ValueError):
    """Invalid options or option combinations given by the user."""


#: Exceptions the CLI turns into one line on stderr and exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (XrdsolveError, ConditioningError, RefineError)
