"""Calculated patterns of many structures: batched chunks, optionally spread over worker threads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from pymatgen.core import Structure
from torch import Tensor

from .batch import CrystalBatch
from .forward import simulate
from .params import Instrument, ProfileParams


def simulate_structures(
    structures: Sequence[Structure],
    two_theta: Tensor | Sequence[float],
    instrument: Instrument,
    profile: Mapping[str, Any] | None = None,
    *,
    chunk: int = 64,
    workers: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(N, M) calculated patterns of N structures on the 2θ grid (degrees), no gradients.

    ``profile`` holds :meth:`ProfileParams.default` overrides shared by all structures (e.g. ``X``, ``Y`` in
    centidegrees, ``background`` coefficients). Each chunk of ``chunk`` structures is one batched
    :func:`simulate` call. With ``workers`` > 1 (default: torch's thread count) the chunks run on that many
    threads with one torch thread each — torch releases the GIL inside its kernels, and the renderer's
    scatter-add is serial, so chunks in parallel use the cores better than threads inside one call; torch's
    thread count is restored afterwards.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    grid = torch.as_tensor(two_theta, dtype=torch.float64)
    parts = [structures[i : i + chunk] for i in range(0, len(structures), chunk)]
    if not parts:
        return torch.zeros(0, grid.shape[0], dtype=dtype)
    n_workers = max(1, min(torch.get_num_threads() if workers is None else workers, len(parts)))
    overrides = dict(profile or {})

    def one(part: Sequence[Structure]) -> Tensor:
        batch = CrystalBatch.from_structures(list(part), dtype=dtype)
        prof = ProfileParams.default(len(part), dtype=dtype, **overrides)
        with torch.no_grad():
            y = simulate(batch, grid, instrument, prof)
        if not isinstance(y, Tensor):
            raise TypeError("simulate returned per-reflection data")
        return y

    if n_workers == 1:
        return torch.cat([one(p) for p in parts])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(n_workers) as pool:
            return torch.cat(list(pool.map(one, parts)))
    finally:
        torch.set_num_threads(threads)


__all__ = ["simulate_structures"]
