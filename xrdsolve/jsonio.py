"""JSON output shared by the solve and batch writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as Python values, anything else as text."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def read_records(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file written with ``settings`` (their ``"settings"`` entry), in file order;
    lines that do not parse (a torn last line of an interrupted run) are skipped."""
    import json

    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("settings") == settings:
            out.append(rec)
    return out
