"""Configuration of the generator and its training run (dataclasses; TOML or JSON in, JSON out)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from xrdsolve.errors import UsageError

from .denoiser import DenoiserConfig
from .diffusion import DiffusionConfig


@dataclass
class EncoderConfig:
    n_points: int = 2048  # Q-grid points
    q_min: float = 0.3  # Å⁻¹
    q_max: float = 6.0  # Å⁻¹
    width: int = 64
    pattern_dim: int = 256
    composition_dim: int = 128


@dataclass
class DataConfig:
    mp20_weight: float = 0.4
    perov_weight: float = 0.15
    carbon_weight: float = 0.15
    random_weight: float = 0.3  # pyxtal random crystals (0 disables the generated part)
    random_pool: str = "/tmp/xgen/random_pool.jsonl"
    random_pool_size: int = 0  # `xrdsolve train` first tops the pool up to this many crystals
    random_pool_seed: int = 1234
    max_atoms: int = 24
    two_theta_step: float = 0.02  # degrees, simulation grid for Cu Kα (scaled for other λ)


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 48
    lr: float = 5e-4
    weight_decay: float = 1e-5
    steps: int = 20000
    warmup: int = 200
    grad_clip: float = 1.0
    cond_drop: float = 0.1  # classifier-free guidance: probability of dropping the pattern embedding
    ema: float = 0.999
    val_every: int = 500
    val_n: int = 8  # validation patterns for the quick match rate
    val_samples: int = 4  # samples per validation pattern
    sample_steps: int = 100
    checkpoint_every_s: float = 240.0
    threads: int = 2
    time_limit_s: float = 0.0  # stop after this wall time (0 = no limit)
    stop_step: int = 0  # stop at this step (0 = run to `steps`); the LR schedule still spans `steps`


@dataclass
class GeneratorConfig:
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorConfig:
        return _build(cls, d, "config")

    @classmethod
    def load(cls, path: str | Path) -> GeneratorConfig:
        """Read a TOML (``.toml``) or JSON config; unknown keys are an error."""
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"config file not found: {p}")
        text = p.read_text()
        try:
            d = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{p}: cannot parse config: {exc}") from exc
        return cls.from_dict(d)


def _build(cls: Any, d: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        default = getattr(cls(), k)
        if is_dataclass(default) and isinstance(v, dict):
            kwargs[k] = _build(type(default), v, f"{where}.{k}")
        elif isinstance(default, tuple):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)
