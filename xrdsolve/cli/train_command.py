"""``xrdsolve train``: train the diffusion generator from a TOML/JSON config into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command()
def train(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="Generator config (TOML or JSON), e.g. data/configs/generator_default.toml.",
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Run directory (checkpoints, logs, final weights/)."
    ),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda, cuda:1, mps, ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's checkpoint."),
) -> None:
    """Train the generator (progress bar, periodic validation, resumable checkpoints; torchrun for DDP)."""
    import json

    from rich.console import Console

    from xrdsolve.generate.config import GeneratorConfig
    from xrdsolve.generate.data import write_random_pool
    from xrdsolve.generate.train import train as run_training

    cfg = GeneratorConfig.load(config)
    pool = Path(cfg.data.random_pool)
    if cfg.data.random_weight > 0 and cfg.data.random_pool_size > 0:
        have = sum(1 for _ in pool.open()) if pool.is_file() else 0
        if have < cfg.data.random_pool_size:
            Console(stderr=True).print(
                f"writing {cfg.data.random_pool_size - have} pyxtal crystals to {pool}"
            )
            write_random_pool(pool, cfg.data.random_pool_size - have, seed=cfg.data.random_pool_seed + have)
    if resume and not (output / "checkpoint.safetensors").is_file():
        raise typer.BadParameter(f"--resume: no checkpoint in {output}")
    state = run_training(cfg, output, device=device, resume=resume)
    val = state.get("val", [])
    Console().print(json.dumps({"steps": state["step"], "last_validation": val[-1] if val else None}))
