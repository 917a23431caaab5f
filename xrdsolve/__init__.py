"""xrdsolve — crystal structure solution from powder diffraction.

Importing this package is light: the physics (``xrdsolve.refine``), the pattern tools
(``xrdsolve.conditioning``) and the generative model (``xrdsolve.generate``) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0.dev0"

_LAZY = {
    "read_pattern": ("xrdsolve.conditioning.io", "read_pattern"),
    "Pattern": ("xrdsolve.conditioning.pattern", "Pattern"),
    "Radiation": ("xrdsolve.refine.radiation", "Radiation"),
    "solve": ("xrdsolve.pipeline", "solve"),
    "SolveOptions": ("xrdsolve.pipeline", "SolveOptions"),
    "Solution": ("xrdsolve.solution", "Solution"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'xrdsolve' has no attribute {name!r}")


__all__ = ["Pattern", "Radiation", "Solution", "SolveOptions", "__version__", "read_pattern", "solve"]
