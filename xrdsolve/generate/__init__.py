"""The PXRD-conditioned diffusion generator: denoiser, diffusion, sampler, training, shipped weights.

``xrdsolve.generate.sample(pattern, composition, n=..., seed=..., lattice=None)`` draws candidate
structures with the shipped weights. Heavy modules load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_weights", "sample"]


def __getattr__(name: str) -> Any:
    if name == "sample":
        from .sampler import sample

        return sample
    if name == "load_weights":
        from .weights import load_weights

        return load_weights
    raise AttributeError(f"module 'xrdsolve.generate' has no attribute {name!r}")
