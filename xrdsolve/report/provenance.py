"""Provenance of a solve: software and model versions, seed and options."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def weights_info(directory: str | Path | None = None) -> dict[str, Any]:
    """Identity of the generator weights: directory, sha256 (first 12 hex) of model.safetensors, training
    steps and git commit from config.json. ``{"available": False}`` when there are none."""
    if directory is None:
        from importlib import resources

        directory = Path(str(resources.files("xrdsolve"))) / "weights" / "default"
    d = Path(directory)
    wfile, cfile = d / "model.safetensors", d / "config.json"
    if not wfile.is_file():
        return {"available": False, "directory": str(d)}
    digest = hashlib.sha256(wfile.read_bytes()).hexdigest()[:12]
    info: dict[str, Any] = {"available": True, "name": d.name, "sha256": digest}
    if cfile.is_file():
        meta = json.loads(cfile.read_text()).get("meta", {})
        info["steps"] = meta.get("steps")
        info["git_commit"] = meta.get("git_commit")
    info["id"] = f"{d.name}@{digest}" + (f" ({info['steps']} steps)" if info.get("steps") else "")
    return info


def provenance(solution: Any) -> dict[str, Any]:
    """Everything needed to say how ``solution`` was obtained (JSON-ready)."""
    import torch

    import xrdsolve

    opts = dict(getattr(solution, "options", {}) or {})
    generator = (getattr(solution, "tried", {}) or {}).get("generator", {})
    return {
        "xrdsolve_version": xrdsolve.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "source": str(getattr(solution.pattern, "meta", {}).get("source", "")),
        "seed": opts.get("seed"),
        "generator_used": bool(generator.get("used", False)),
        "generator_note": generator.get("reason", ""),
        "weights": weights_info(),
        "options": opts,
    }
