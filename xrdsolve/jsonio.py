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
