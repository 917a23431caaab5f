"""Opt-in ``torch.compile`` of the forward model's elementwise kernels (CPU inductor, C++ codegen).

Off by default: the first call compiles (≈15–60 s cold on 2 cores, a few seconds with a warm inductor cache in
the temp directory), which only pays off for long simulation jobs. Enable with :func:`set_compile` or the
environment variable ``XRDSOLVE_COMPILE=1``. Compiled kernels are used only where no gradient or tangent flows
(pure simulation), so refinement always runs the eager, analytically differentiated code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_STATE = {"enabled": os.environ.get("XRDSOLVE_COMPILE", "0").strip() not in ("", "0", "false", "no")}
_CACHE: dict[Callable[..., Any], Callable[..., Any]] = {}


def set_compile(enabled: bool) -> None:
    """Turn compiled kernels on or off for this process."""
    _STATE["enabled"] = bool(enabled)


def compile_enabled() -> bool:
    """Whether compiled kernels are in use."""
    return _STATE["enabled"]


def maybe_compiled(fn: F) -> F:
    """``fn`` compiled with dynamic shapes when enabled (compiled once per process), else ``fn`` itself."""
    if not _STATE["enabled"]:
        return fn
    out = _CACHE.get(fn)
    if out is None:
        log.info("compiling %s with torch.compile (first call is slow)", fn.__name__)
        out = torch.compile(fn, dynamic=True)
        _CACHE[fn] = out
    return out  # type: ignore[return-value]
