"""Helpers for the batch tests: synthetic .xye patterns and corrupt files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

#: Corrupt inputs (name, bytes) and a word their error message must contain.
CORRUPT: dict[str, tuple[bytes, str]] = {
    "empty.xye": (b"", "empty file"),
    "random.xye": (bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)), "binary"),
    "nan.xye": (b"10 1 1\n10.02 nan 1\n10.04 3 1\n10.06 4 1\n", "non-finite"),
    "backwards.xye": (b"10 1 1\n10.02 2 1\n10.01 3 1\n10.04 4 1\n", "increasing"),
    "text.xye": (b"this is not a pattern\nat all\n", "no numeric data"),
}


def write_patterns(folder: Path, n: int, *, points: int = 1500, seed: int = 0) -> list[Path]:
    """Write ``n`` synthetic Cu Kα .xye patterns (Gaussian peaks on a flat background, Poisson noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tt = np.round(np.linspace(10.0, 80.0, points), 5)
    paths = []
    for i in range(n):
        centres = rng.uniform(15, 75, size=rng.integers(3, 9))
        y = np.full_like(tt, 50.0)
        for c in centres:
            y += rng.uniform(200, 2000) * np.exp(-0.5 * ((tt - c) / 0.06) ** 2)
        y = rng.poisson(y).astype(float)
        path = folder / f"sim_{i:04d}.xye"
        header = "# synthetic pattern; radiation CuKa\n"
        body = "\n".join(f"{a:.5f} {b:.0f} {max(np.sqrt(b), 1.0):.3f}" for a, b in zip(tt, y, strict=True))
        path.write_text(header + body + "\n")
        paths.append(path)
    return paths


def write_corrupt(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (data, _) in CORRUPT.items():
        (folder / name).write_bytes(data)
        out.append(folder / name)
    return out


def store_rows(outdir: Path) -> list[dict]:
    """All rows of OUTDIR/results.sqlite (read-only, safe while a batch runs)."""
    path = outdir / "results.sqlite"
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM results ORDER BY path")]
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        con.close()
