"""Save and load generator weights: ``model.safetensors`` + ``config.json`` (+ a model card README.md).

Never unpickles: tensors come from safetensors, everything else from JSON. The default checkpoint ships
as package data in ``xrdsolve/weights/default/``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from xrdsolve.errors import XrdsolveError

from .config import GeneratorConfig
from .model import GeneratorModel


class WeightsError(XrdsolveError):
    """Missing or incompatible generator weights."""


def default_weights_dir() -> Path:
    """``xrdsolve/weights/default`` inside the installed package."""
    return Path(str(resources.files("xrdsolve"))) / "weights" / "default"


def save_weights(directory: Path, model: GeneratorModel, cfg: GeneratorConfig, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` (float32) and ``config.json`` ({"model": config, "meta": meta})."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "meta": meta}, indent=1))


def load_weights(
    directory: str | Path | None = None, device: str = "cpu"
) -> tuple[GeneratorModel, GeneratorConfig, dict[str, Any]]:
    """Load a generator from ``directory`` (default: the shipped weights); returns (model, config, meta)."""
    d = Path(directory) if directory is not None else default_weights_dir()
    wfile, cfile = d / "model.safetensors", d / "config.json"
    if not wfile.is_file() or not cfile.is_file():
        raise WeightsError(f"no generator weights in {d} (need model.safetensors and config.json)")
    js = json.loads(cfile.read_text())
    cfg = GeneratorConfig.from_dict(js["model"])
    model = GeneratorModel(cfg)
    try:
        model.load_state_dict(load_file(str(wfile)))
    except RuntimeError as exc:
        raise WeightsError(f"{wfile}: weights do not fit the configured model: {exc}") from exc
    model.to(device).eval()
    return model, cfg, js.get("meta", {})


@lru_cache(maxsize=2)
def cached_default(device: str = "cpu") -> tuple[GeneratorModel, GeneratorConfig, dict[str, Any]]:
    return load_weights(None, device)


def to_device(model: GeneratorModel, device: str) -> GeneratorModel:
    return model.to(torch.device(device))


def export_checkpoint(run_dir: Path, directory: Path, extra_meta: dict[str, Any] | None = None) -> None:
    """Write the EMA weights of a training run's latest checkpoint as a weights directory."""
    from .train import load_checkpoint_meta

    cfg = GeneratorConfig.load(run_dir / "config.json")
    tensors = load_file(str(run_dir / "checkpoint.safetensors"))
    model = GeneratorModel(cfg)
    model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    meta = load_checkpoint_meta(run_dir)
    meta.update(extra_meta or {})
    save_weights(directory, model, cfg, meta)
