"""Training loop: weighted sources, cached augmented patterns, AdamW + cosine LR, EMA, periodic validation
(loss and a quick match rate), resumable checkpoints (safetensors + JSON), seeds, --device, torch DDP."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from xrdsolve.conditioning.augment import AugmentConfig
from xrdsolve.conditioning.preprocess import QGrid

from .config import GeneratorConfig
from .data import load_random_pool, load_split
from .diffusion import CrystalTensors, Schedule, diffusion_loss, lattice_statistics
from .model import GeneratorModel
from .trainset import PackedStructures, PatternCache

log = logging.getLogger(__name__)


@dataclass
class Sources:
    names: list[str]
    packs: list[PackedStructures]
    weights: np.ndarray

    def split_ids(self) -> dict[str, list[str]]:
        return {n: p.ids for n, p in zip(self.names, self.packs, strict=True) if not n.startswith("pyxtal")}


def build_sources(cfg: GeneratorConfig) -> Sources:
    """Training sources with non-zero weight: MP-20 train, perov_5 val, carbon_24 val, the pyxtal pool."""
    d = cfg.data
    names: list[str] = []
    packs: list[PackedStructures] = []
    weights: list[float] = []
    spec = [
        ("mp20/train", d.mp20_weight, lambda: load_split("mp20", "train")),
        ("perov_5/val", d.perov_weight, lambda: load_split("perov_5", "val")),
        ("carbon_24/val", d.carbon_weight, lambda: load_split("carbon_24", "val")),
        ("pyxtal", d.random_weight, lambda: load_random_pool(Path(d.random_pool))),
    ]
    for name, w, loader in spec:
        if w <= 0:
            continue
        recs = loader()
        if not recs:
            log.warning("source %s is empty; skipped", name)
            continue
        names.append(name)
        packs.append(PackedStructures.pack([r.id for r in recs], [r.structure for r in recs], d.max_atoms))
        weights.append(w)
        log.info("source %s: %d structures", name, len(packs[-1]))
    wts = np.asarray(weights, dtype=np.float64)
    return Sources(names, packs, wts / wts.sum())


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _lr(step: int, cfg: GeneratorConfig) -> float:
    t = cfg.train
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    p = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
    return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def _opt_state_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.contiguous()
            else:
                meta[f"{pid}.{k}"] = v
    return tensors, meta


def save_checkpoint(
    run_dir: Path,
    model: GeneratorModel,
    ema: GeneratorModel,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
) -> None:
    """Write ``checkpoint.safetensors`` (model, EMA, optimizer tensors) and ``checkpoint.json`` atomically."""
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.contiguous() for k, v in ema.state_dict().items()})
    ot, ometa = _opt_state_tensors(opt)
    tensors.update(ot)
    tmp = run_dir / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(run_dir / "checkpoint.safetensors")
    js = dict(state, opt_meta=ometa)
    (run_dir / "checkpoint.json.tmp").write_text(json.dumps(js))
    (run_dir / "checkpoint.json.tmp").replace(run_dir / "checkpoint.json")


def load_checkpoint(
    run_dir: Path, model: GeneratorModel, ema: GeneratorModel, opt: torch.optim.Optimizer
) -> dict[str, Any]:
    tensors = load_file(str(run_dir / "checkpoint.safetensors"))
    state = json.loads((run_dir / "checkpoint.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    sd = opt.state_dict()
    new_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            new_state.setdefault(int(pid), {})[name] = v
    for key, v in state.get("opt_meta", {}).items():
        pid, name = key.split(".", 1)
        new_state.setdefault(int(pid), {})[name] = v
    sd["state"] = new_state
    opt.load_state_dict(sd)
    return state


def load_checkpoint_meta(run_dir: Path) -> dict[str, Any]:
    """Training metadata of a run (steps, validation history, split IDs, data sources, commit)."""
    state = json.loads((run_dir / "checkpoint.json").read_text())
    if not state.get("split_ids"):
        cfg = GeneratorConfig.load(run_dir / "config.json")
        sources = build_sources(cfg)
        state.update(
            split_ids=sources.split_ids(), sources=sources.names, source_weights=sources.weights.tolist()
        )
    return {
        "steps": state.get("step"),
        "validation": state.get("val", []),
        "split_ids": state.get("split_ids", {}),
        "sources": state.get("sources", []),
        "source_weights": state.get("source_weights", []),
        "git_commit": state.get("git_commit", git_commit()),
    }


def _ddp() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world


def train(cfg: GeneratorConfig, run_dir: Path, device: str = "cpu", resume: bool = False) -> dict[str, Any]:
    """Train (or resume) a generator into ``run_dir``; returns the final state dictionary."""
    from .weights import save_weights

    rank, world = _ddp()
    tc = cfg.train
    torch.manual_seed(tc.seed + rank)
    rng = np.random.default_rng(tc.seed + 7919 * rank)
    torch.set_num_threads(max(1, tc.threads))
    run_dir.mkdir(parents=True, exist_ok=True)
    sources = build_sources(cfg)
    # lattice normalisation statistics from the real training structures
    if cfg.diffusion.fit_lattice_stats:  # deterministic: the same on resume
        mp = sources.packs[0]
        mean, std = lattice_statistics(torch.as_tensor(mp.lattice).double(), torch.as_tensor(mp.n))
        cfg.diffusion.lat_mean = tuple(mean)
        cfg.diffusion.lat_std = tuple(std)
    cfg.to_json(run_dir / "config.json")
    schedule = Schedule(cfg.diffusion)
    model = GeneratorModel(cfg).to(device)
    ema = GeneratorModel(cfg).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    state: dict[str, Any] = {"step": 0, "history": []}
    state.update(split_ids=sources.split_ids(), sources=sources.names, source_weights=sources.weights.tolist(),
                 git_commit=git_commit())  # fmt: skip
    if resume and (run_dir / "checkpoint.safetensors").is_file():
        state = load_checkpoint(run_dir, model, ema, opt)
        rng = np.random.default_rng(tc.seed + 7919 * rank + state["step"])
        torch.manual_seed(tc.seed + rank + state["step"])
        log.info("resumed at step %d", state["step"])
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    e = cfg.encoder
    grid = QGrid(e.q_min, e.q_max, e.n_points)
    cache = PatternCache(grid, AugmentConfig())
    val = _validation_set(cfg, grid)
    last_ckpt = time.time()
    t_start = time.time()
    bar = tqdm(total=tc.steps, initial=state["step"], disable=rank != 0, desc="train", mininterval=10)
    while state["step"] < tc.steps:
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        src = int(rng.choice(len(sources.packs), p=sources.weights))
        pack = sources.packs[src]
        idx = rng.integers(0, len(pack), tc.batch_size)
        batch = pack.batch(idx)
        pat = torch.as_tensor(cache.get(sources.names[src], idx, batch, rng))
        batch, pat = batch.to(device), pat.to(device)
        drop = torch.as_tensor(rng.random(tc.batch_size) < tc.cond_drop, device=device)
        cond = model.condition(pat, batch.species, batch.mask, drop)
        loss, info = diffusion_loss(net, schedule, batch, cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        with torch.no_grad():
            decay = min(tc.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        state["step"] = step + 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(
                loss=f"{info['loss']:.3f}", coord=f"{info['coord']:.3f}", lat=f"{info['lattice']:.3f}"
            )
            state["history"].append({"step": step, "src": sources.names[src], **info, "time": time.time()})
        if rank == 0 and (state["step"] % tc.val_every == 0 or state["step"] == tc.steps):
            metrics = validate(ema, schedule, val, cfg, device)
            metrics["step"] = state["step"]
            state.setdefault("val", []).append(metrics)
            log.info("validation %s", metrics)
            with (run_dir / "val.jsonl").open("a") as fh:
                fh.write(json.dumps(metrics) + "\n")
        out_of_time = (tc.time_limit_s > 0 and time.time() - t_start > tc.time_limit_s) or (
            tc.stop_step > 0 and state["step"] >= tc.stop_step
        )
        if rank == 0 and (time.time() - last_ckpt > tc.checkpoint_every_s or out_of_time):
            save_checkpoint(run_dir, model, ema, opt, state)
            last_ckpt = time.time()
        if out_of_time:
            log.info("time limit reached at step %d", state["step"])
            break
    bar.close()
    if rank == 0:
        save_checkpoint(run_dir, model, ema, opt, state)
        save_weights(
            run_dir / "weights",
            ema,
            cfg,
            {"split_ids": sources.split_ids(), "sources": sources.names, "source_weights": sources.weights.tolist(),
             "steps": state["step"], "git_commit": git_commit(), "validation": state.get("val", [])},
        )  # fmt: skip
    return state


@dataclass
class _Val:
    batch: CrystalTensors
    patterns: torch.Tensor
    ids: list[str]


def _validation_set(cfg: GeneratorConfig, grid: QGrid) -> _Val:
    from .trainset import encode_batch

    recs = load_split("mp20", "val")
    recs = [r for r in recs if len(r.structure) <= cfg.data.max_atoms][: max(cfg.train.val_n, 48)]
    pack = PackedStructures.pack([r.id for r in recs], [r.structure for r in recs], cfg.data.max_atoms)
    batch = pack.batch(np.arange(len(pack)))
    rng = np.random.default_rng(12345)
    aug = AugmentConfig(p_cu=1.0)
    pats = torch.as_tensor(encode_batch(batch, rng, grid, aug))
    return _Val(batch, pats, pack.ids)


@torch.no_grad()
def validate(
    model: GeneratorModel, schedule: Schedule, val: _Val, cfg: GeneratorConfig, device: str
) -> dict[str, Any]:
    """Validation loss at fixed noise and a quick match rate (val_n patterns × val_samples samples)."""
    from .metrics import match_rate
    from .sampler import SamplerSettings, reverse_process

    model.eval()
    g = torch.Generator().manual_seed(0)
    b = val.batch.to(device)
    cond = model.condition(val.patterns.to(device), b.species, b.mask)
    t = torch.rand(b.species.shape[0], generator=g) * 0.999 + 1e-3
    noise = (torch.randn(b.species.shape[0], 6, generator=g), torch.randn(b.frac.shape, generator=g))
    _, info = diffusion_loss(
        model, schedule, b, cond, t=t.to(device), noise=(noise[0].to(device), noise[1].to(device))
    )
    n, k = cfg.train.val_n, cfg.train.val_samples
    sel = torch.arange(n).repeat_interleave(k)
    sub = b.index(sel.to(device))
    out = reverse_process(
        model, schedule, sub.species, sub.mask, cond[sel], settings=SamplerSettings(steps=cfg.train.sample_steps),
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    truth = b.index(torch.arange(n).to(device)).to_structures()
    samples = out.to_structures()
    groups = [samples[i * k : (i + 1) * k] for i in range(n)]
    rate, _ = match_rate(truth, groups)
    model.train()
    return {
        "val_loss": info["loss"],
        "val_coord": info["coord"],
        "val_lattice": info["lattice"],
        f"match@{k}": rate,
    }
