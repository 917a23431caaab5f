"""``xrdsolve bench generate``: match rates of raw generator samples against a pyxtal random baseline.

Patterns are simulated (Cu Kα1/Kα2, 2θ 5–90°, randomised instrument effects) from held-out MP-20 rows.
The generator and the baseline both get the true cell content (composition × Z); each draws k
candidates per pattern, ranked by the cosine similarity of their quick-simulated pattern (default
profile) with the measured one on the encoder's Q grid. match@1 uses the top-ranked candidate,
match@k any of the k (StructureMatcher stol=0.5, angle_tol=10, ltol=0.3).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure
from tqdm import tqdm

from xrdsolve.composition import reduced_formula_and_units
from xrdsolve.conditioning.augment import AugmentConfig, augment_batch
from xrdsolve.conditioning.pattern import Pattern
from xrdsolve.conditioning.preprocess import QGrid, encode_arrays, preprocess
from xrdsolve.refine.radiation import Radiation

from .cells import IndexedCell, indexed_cells
from .data import load_split, random_crystal, spacegroup_frequencies
from .diffusion import CrystalTensors, Schedule
from .metrics import MATCHER_KW, match_rate, min_distance
from .sampler import SamplerSettings, composition_species, reverse_process
from .symmetric import sample_on_templates, templates_for
from .trainset import PackedStructures, physics_species

log = logging.getLogger(__name__)


def point_group_rotations(structure: Structure) -> np.ndarray | None:
    """Cartesian rotation matrices (K,3,3) of ``structure``'s point group (spglib, 0.01 Å), None if unknown."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        ops = SpacegroupAnalyzer(structure, symprec=0.01).get_symmetry_operations(cartesian=True)
    except Exception:
        return None
    return np.stack([op.rotation_matrix for op in ops])


def simulate_patterns(structures: Sequence[Structure], seed: int = 0) -> list[Pattern]:
    """Measured-looking Cu Kα patterns (2θ 5–90°) of ``structures`` with randomised instrument effects; the
    random lattice strain keeps each structure's point-group symmetry (a measured cubic phase is cubic).

    Pattern ``i`` depends only on ``seed``, ``i`` and its structure (its own random stream, simulated
    alone), so the first 40 patterns of a 100-pattern benchmark are the patterns of a 40-pattern one."""
    aug = AugmentConfig(p_cu=1.0, cu_range=(5.0, 90.0))
    out: list[Pattern] = []
    for i, structure in enumerate(structures):
        rng = np.random.default_rng([seed, i])
        b = PackedStructures.pack([str(i)], [structure], len(structure)).batch(np.arange(1))
        sp = torch.as_tensor(physics_species(b.species.numpy()))
        sim = augment_batch(
            b.lattice, b.frac, sp, b.mask, rng, aug, rotations=[point_group_rotations(structure)]
        )
        out.append(
            Pattern.from_arrays(
                sim.two_theta, sim.intensity[0], radiation=Radiation.parse("CuKa"), counts=True
            )
        )
    return out


def pattern_scores(pattern: Pattern, candidates: Sequence[Structure], grid: QGrid) -> np.ndarray:
    """Cosine similarity (encoder Q grid) between ``pattern`` and each candidate's default-profile pattern.

    Compared as background-subtracted intensities (the square of the encoder's √ channel), lightly
    smoothed (σ one grid step) so a small zero shift does not decide: in the √ scale the counting noise
    left after background subtraction carries much of the norm, and candidates with many weak peaks
    outscored the true structure (cosine 0.41 against 0.73 here for TmMgHg2)."""
    from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, simulate

    target = _comparable(preprocess(pattern, grid)[0])
    ok = [i for i, s in enumerate(candidates) if _sane(s)]
    scores = np.full(len(candidates), -1.0)
    if not ok:
        return scores
    tt = np.linspace(pattern.two_theta[0], pattern.two_theta[-1], 3000)
    inst = Instrument(radiation=pattern.radiation or Radiation.parse("CuKa"), window_fwhm=8.0)
    for start in range(0, len(ok), 64):
        sel = ok[start : start + 64]
        ct = CrystalTensors.from_structures([candidates[i] for i in sel])
        cb = CrystalBatch(
            lattice=ct.lattice, frac=ct.frac, species=torch.as_tensor(physics_species(ct.species.numpy())),
            occ=ct.mask.float(), b_iso=0.5 * ct.mask.float(), mask=ct.mask,
        )  # fmt: skip
        prof = ProfileParams.default(len(sel), dtype=torch.float32, U=8.0, V=-2.0, W=6.0, X=2.0, Y=2.0)
        with torch.no_grad():
            y = simulate(cb, torch.as_tensor(tt, dtype=torch.float32), inst, prof)
        assert isinstance(y, torch.Tensor)
        q = 4 * np.pi * np.sin(np.deg2rad(tt / 2)) / inst.radiation.primary_wavelength
        for j, row in zip(sel, y.double().numpy(), strict=True):
            enc = _comparable(encode_arrays(q, row, grid)[0])
            den = float(np.linalg.norm(enc) * np.linalg.norm(target))
            scores[j] = float(enc @ target) / den if den > 0 else -1.0
    return scores


def _comparable(sqrt_channel: np.ndarray) -> np.ndarray:
    """Intensity (max 1) from the encoder's √ channel, smoothed over one Q-grid step."""
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(sqrt_channel, dtype=np.float64) ** 2, 1.0)


def _sane(s: Structure) -> bool:
    v = s.lattice.volume
    return bool(np.isfinite(v) and v > 1.0 and v / len(s) < 500 and np.isfinite(s.lattice.abc).all())


def _rank(groups: list[list[Structure]], patterns: Sequence[Pattern], grid: QGrid) -> list[list[Structure]]:
    out = []
    for cands, pat in zip(groups, patterns, strict=True):
        sc = pattern_scores(pat, cands, grid)
        out.append([cands[i] for i in np.argsort(-sc, kind="stable")])
    return out


def _summary(truth: Sequence[Structure], ranked: list[list[Structure]], k: int) -> dict[str, Any]:
    m1, _ = match_rate(truth, [r[:1] for r in ranked])
    mk, rms = match_rate(truth, [r[:k] for r in ranked])
    found = [r for r in rms if r is not None]
    flat = [s for r in ranked for s in r]
    valid = [min_distance(s) >= 0.5 if _sane(s) else False for s in flat]
    vol = [s.volume / t.volume for r, t in zip(ranked, truth, strict=True) for s in r[:1] if _sane(s)]
    return {
        "match@1": round(m1, 4),
        f"match@{k}": round(mk, 4),
        "rms": round(float(np.mean(found)), 4) if found else None,
        "valid_fraction": round(float(np.mean(valid)), 4) if valid else 0.0,
        "median_volume_ratio": round(float(np.median(vol)), 3) if vol else None,
    }


def bench_generate(
    split: str = "val",
    n: int = 120,
    k: int = 20,
    seed: int = 0,
    steps: int = 50,
    weights: str | Path | None = None,
    baseline: bool = True,
    cache_dir: Path | None = None,
    patterns_per_chunk: int = 6,
    physics_guidance: bool = False,
    lattice: str = "free",
    index_time: float = 15.0,
) -> dict[str, Any]:
    """Run the generator benchmark; returns the figures (see module docstring). ``physics_guidance``
    samples with :class:`~xrdsolve.generate.guidance.PatternGuidance` towards each measured pattern
    (one pattern per reverse process). ``lattice="indexed"`` reads the cell from each pattern by
    indexing (≤ ``index_time`` s of search; Z the multiple of the given Z that fits its volume) and, when
    the cell has extinction-compatible space groups, draws half of the k samples on their Wyckoff templates
    in that cell (space-group-aware mode), the rest with a sampled lattice. It adds a second baseline with
    the same information: the solve's random candidates in the indexed cell (the Wyckoff walk of the same
    groups, else pyxtal random groups of the cell's crystal system), the plain baseline's where no cell is
    found."""
    from .guidance import PatternGuidance
    from .weights import cached_default, load_weights

    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if lattice not in ("free", "indexed"):
        raise ValueError(f"lattice must be 'free' or 'indexed', got {lattice!r}")
    recs = load_split("mp20", split)[:n]
    truth = [r.structure for r in recs]
    patterns = simulate_patterns(truth, seed=seed)
    model, cfg, meta = cached_default("cpu") if weights is None else load_weights(weights, "cpu")
    schedule = Schedule(cfg.diffusion)
    e = cfg.encoder
    grid = QGrid(e.q_min, e.q_max, e.n_points)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    cells: list[IndexedCell | None] = [None] * len(recs)
    if lattice == "indexed":
        for i in tqdm(range(len(recs)), desc="index", mininterval=5):
            comp = truth[i].composition
            _, z_given = reduced_formula_and_units(comp)
            found, _ = indexed_cells(patterns[i], comp, time_limit=index_time, z_multiple=z_given)
            cells[i] = found[0] if found else None
    t_index = (time.perf_counter() - t0) / len(recs)
    on_sites: dict[int, list[Structure]] = {}
    with torch.no_grad():
        for i, cell in enumerate(cells):
            if cell is None or not cell.spacegroups:
                continue
            templates = templates_for(cell.cell_content, cell.z, cell.spacegroups, cell.parameters, k // 2)
            if templates:
                pat = torch.as_tensor(preprocess(patterns[i], grid))[None]
                hook = PatternGuidance(patterns[i]) if physics_guidance else None
                settings = SamplerSettings(steps=steps)
                on_sites[i] = sample_on_templates(model, schedule, pat, templates, settings, gen, hook)
        counts = [k - len(on_sites.get(i, [])) for i in range(len(recs))]
        free = _sample_free(
            model, schedule, grid, truth, patterns, counts, steps, gen,
            1 if physics_guidance else patterns_per_chunk, physics_guidance,
        )  # fmt: skip
    groups = [on_sites.get(i, []) + free[i] for i in range(len(recs))]
    t_sample = (time.perf_counter() - t0) / len(recs)
    ranked = _rank(groups, patterns, grid)
    result: dict[str, Any] = {"bench": "generate", "split": split, "n": len(recs), "k": k, "steps": steps,
                              "physics_guidance": physics_guidance, "lattice": lattice}  # fmt: skip
    result.update({f"model_{key}": v for key, v in _summary(truth, ranked, k).items()})
    result["model_seconds_per_pattern"] = round(t_sample, 3)
    if lattice == "indexed":
        result["indexed_fraction"] = round(sum(c is not None for c in cells) / len(recs), 4)
        result["indexing_seconds_per_pattern"] = round(t_index, 3)
        result["wyckoff_fraction"] = round(len(on_sites) / len(recs), 4)
        in_cell = _cell_baseline(truth, cells, k, seed)
        result.update(
            {
                f"cell_baseline_{key}": v
                for key, v in _summary(truth, _rank(in_cell, patterns, grid), k).items()
            }
        )
    if baseline:
        base = _baseline(truth, k, seed, cache_dir)
        result.update(
            {f"baseline_{key}": v for key, v in _summary(truth, _rank(base, patterns, grid), k).items()}
        )
        for key in ("match@1", f"match@{k}"):
            b = result[f"baseline_{key}"]
            result[f"ratio_{key}"] = round(result[f"model_{key}"] / b, 3) if b else None
    result["matcher"] = MATCHER_KW
    result["weights_steps"] = meta.get("steps")
    return result


def _sample_free(
    model: Any,
    schedule: Schedule,
    grid: QGrid,
    truth: Sequence[Structure],
    patterns: Sequence[Pattern],
    counts: Sequence[int],
    steps: int,
    gen: torch.Generator,
    per_chunk: int,
    physics_guidance: bool,
) -> list[list[Structure]]:
    """``counts[i]`` samples for pattern i with the true cell content and a sampled lattice, ``per_chunk``
    patterns per reverse process (one with physics guidance, whose hook holds one pattern)."""
    from .guidance import PatternGuidance

    out: list[list[Structure]] = [[] for _ in truth]
    todo = [i for i, c in enumerate(counts) if c > 0]
    for start in tqdm(range(0, len(todo), per_chunk), desc="generate", mininterval=5):
        chunk = todo[start : start + per_chunk]
        cts = [composition_species(truth[i].composition) for i in chunk]
        rows = [j for j, i in enumerate(chunk) for _ in range(counts[i])]
        species = torch.zeros(len(rows), max(len(z) for z in cts), dtype=torch.long)
        for r, j in enumerate(rows):
            species[r, : len(cts[j])] = torch.tensor(cts[j])
        mask = species > 0
        pats = torch.stack([torch.as_tensor(preprocess(patterns[i], grid)) for i in chunk])
        first = [rows.index(j) for j in range(len(chunk))]
        emb = model.condition(pats, species[first], mask[first])[:, : model.cfg.encoder.pattern_dim]
        cond = torch.cat([emb[rows], model.composition_encoder(species, mask)], dim=1)
        hook = PatternGuidance(patterns[chunk[0]]) if physics_guidance else None
        res = reverse_process(
            model, schedule, species, mask, cond, settings=SamplerSettings(steps=steps), generator=gen,
            guidance=hook,
        )  # fmt: skip
        for j, structure in zip(rows, res.to_structures(), strict=True):
            out[chunk[j]].append(structure)
    return out


def baseline_candidates(
    truth: Sequence[Structure], k: int, seed: int, index: Sequence[int]
) -> list[list[Structure]]:
    """k pyxtal random symmetric structures for each ``truth[i]``, i in ``index`` (same composition and
    atom count; space groups from the MP-20 frequencies among the compatible ones). Per-target seeds, so
    any split of ``index`` gives the same structures. A draw that takes pyxtal longer than
    ``BASELINE_DRAW_SECONDS`` (its Wyckoff search can run for hours, e.g. on Sm8Sb3O8) is given up: that
    target gets fewer than k structures (logged)."""
    freq = spacegroup_frequencies()
    out: list[list[Structure]] = []
    for i in tqdm(index, desc="baseline", mininterval=5):
        s = truth[i]
        rng = np.random.default_rng([seed, int(i)])
        row: list[Structure] = []
        given_up = 0
        for _ in range(k):
            try:
                with _time_limit(BASELINE_DRAW_SECONDS):
                    c = random_crystal(
                        rng, composition=s.composition.reduced_composition, n_atoms=len(s), sg_freq=freq,
                        max_atoms=64,
                    )  # fmt: skip
            except _DrawTimeout:
                given_up += 1
                continue
            if c is not None:
                row.append(c)
        if given_up:
            log.warning("baseline: %d pyxtal draws for %s given up after %g s", given_up,
                        s.composition.formula, BASELINE_DRAW_SECONDS)  # fmt: skip
        out.append(row)
    return out


#: Wall-time limit (s) of one pyxtal draw of the baseline
BASELINE_DRAW_SECONDS = 20.0


class _DrawTimeout(BaseException):
    """Raised by the alarm of :func:`_time_limit` (a BaseException, so pyxtal's ``except Exception`` lets it
    through)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`_DrawTimeout` after ``seconds`` of wall time (SIGALRM; in the main
    thread of a Unix process only, elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum: int, frame: object) -> None:
        raise _DrawTimeout

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _cell_baseline(
    truth: Sequence[Structure], cells: Sequence[IndexedCell | None], k: int, seed: int
) -> list[list[Structure]]:
    """k random symmetric structures per target in its indexed cell with the cell's Z: the solve's
    enumerated Wyckoff walk of the cell's hinted groups, else pyxtal random groups of its crystal system;
    the plain baseline's structures where no cell was found."""
    from xrdsolve.random_candidates import enumerated_symmetric_structures, random_symmetric_structures

    out: list[list[Structure]] = []
    for i, cell in enumerate(cells):
        if cell is None:
            out += baseline_candidates(truth, k, seed, [i])
            continue
        comp = truth[i].composition.reduced_composition
        drawn = enumerated_symmetric_structures(
            comp, cell.z, cell.spacegroups, k, lattice=cell.parameters, seed=seed * 100_003 + i
        )
        if not drawn:
            drawn = random_symmetric_structures(
                comp, [cell.z], k, seed=seed * 100_003 + i, crystal_systems=[cell.crystal_system],
                lattice=cell.parameters,
            )  # fmt: skip
        out.append([s for s, _ in drawn])
    return out


def _baseline(truth: Sequence[Structure], k: int, seed: int, cache_dir: Path | None) -> list[list[Structure]]:
    """Baseline candidates for every target, read from / written to ``cache_dir`` when given."""
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"baseline_{len(truth)}_{k}_{seed}.json"
        if cache.is_file():
            rows = json.loads(cache.read_text())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return [[Structure.from_dict(d) for d in row] for row in rows]
    out = baseline_candidates(truth, k, seed, range(len(truth)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([[c.as_dict() for c in row] for row in out]))
    return out
