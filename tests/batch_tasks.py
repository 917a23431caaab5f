"""Tasks used by the batch tests (importable by spawned workers as ``batch_tasks:...`` with tests/ on the path).

``fault_task`` reads a 2–3 column file with numpy; a file whose first line is ``#CRASH`` kills its
worker process (as the OS OOM killer would), ``#HANG`` sleeps far past any timeout,
``#SPIN`` loops forever in Python, ``#FAIL``
raises. Every other file gets a summary.json with its point count and the 2θ of its highest point.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def fault_task(path: Path, options: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    first = path.read_text(errors="replace").split("\n", 1)[0]
    if first.startswith("#CRASH"):
        os._exit(9)
    if first.startswith("#HANG"):  # stuck in native code: only killing the worker stops it
        time.sleep(600)
    if first.startswith("#SPIN"):  # a Python loop that never ends
        while True:
            time.sleep(0.01)
    if first.startswith("#FAIL"):
        raise RuntimeError("deliberate failure")
    data = np.loadtxt(path, ndmin=2)
    if data.shape[1] not in (2, 3) or len(data) < 2:
        raise ValueError(f"{path}: expected 2 or 3 columns, got {data.shape[1]}")
    (outdir / "summary.json").write_text(
        json.dumps({"n_points": len(data), "max_at": float(data[np.argmax(data[:, 1]), 0])})
    )
    return {"n_peaks": 1, "formula": options.get("composition")}
