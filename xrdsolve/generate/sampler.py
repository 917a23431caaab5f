"""Batched reverse diffusion: lattice by ancestral DDPM steps, coordinates by predictor–corrector on the
torus; classifier-free guidance, a lattice-given mode and an optional physics-guidance hook."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Composition, Lattice, Structure
from torch import Tensor

from xrdsolve.composition import reduced_formula_and_units
from xrdsolve.conditioning.pattern import Pattern
from xrdsolve.conditioning.preprocess import QGrid, preprocess
from xrdsolve.errors import UsageError

from . import wrapped_normal as wn
from .data import MAX_ATOMS
from .diffusion import CrystalTensors, Schedule
from .model import GeneratorModel

log = logging.getLogger(__name__)

#: A physics-guidance hook: (species (B,N), mask (B,N), frac x̂₀ (B,N,3), normalised lattice x̂₀ (B,6),
#: decode: normalised lattice → (B,3,3) Å, t) → (Δfrac, Δlattice (B,6)) nudges applied to the current
#: sample (e.g. minus a step × gradient of a pattern mismatch; see guidance.py).
GuidanceHook = Callable[
    [Tensor, Tensor, Tensor, Tensor, Callable[[Tensor], Tensor], float], tuple[Tensor, Tensor]
]


@dataclass
class SamplerSettings:
    steps: int = 100
    guidance_scale: float = 1.0  # classifier-free guidance weight w (1 = conditional only)
    corrector_lr: float = 0.4  # Langevin step = corrector_lr · σ²
    t_min: float = 1e-3
    min_distance: float = 0.9  # Å: overlapping atoms are pushed apart at the end (0 = off)


def _predict(
    model: GeneratorModel,
    species: Tensor,
    frac: Tensor,
    lat: Tensor,
    t: Tensor,
    cond: Tensor,
    uncond: Tensor | None,
    mask: Tensor,
    w: float,
) -> tuple[Tensor, Tensor]:
    if uncond is None or w == 1.0:
        return model(species, frac, lat, t, cond, mask)
    out_x, out_l = model(
        torch.cat([species, species]),
        torch.cat([frac, frac]),
        torch.cat([lat, lat]),
        torch.cat([t, t]),
        torch.cat([cond, uncond]),
        torch.cat([mask, mask]),
    )
    b = species.shape[0]
    return out_x[b:] + w * (out_x[:b] - out_x[b:]), out_l[b:] + w * (out_l[:b] - out_l[b:])


@torch.no_grad()
def reverse_process(
    model: GeneratorModel,
    schedule: Schedule,
    species: Tensor,
    mask: Tensor,
    cond: Tensor,
    uncond: Tensor | None = None,
    settings: SamplerSettings | None = None,
    generator: torch.Generator | None = None,
    lattice: Tensor | None = None,
    guidance: GuidanceHook | None = None,
    project: Callable[[Tensor], Tensor] | None = None,
) -> CrystalTensors:
    """Draw B crystals with the given atom types (B,N) and mask (B,N), condition (B,D).

    ``lattice`` (B,3,3) Å fixes the cell (lattice-given mode: the lattice channel is replaced by its
    forward-noised value at every step). ``guidance`` is called on the x̂₀ prediction at every step.
    ``project`` maps coordinates (B,N,3) back onto a constraint after every update (e.g. a
    :class:`~xrdsolve.generate.symmetric.SymmetryProjector` keeps each row on its Wyckoff template).
    """
    keep = project if project is not None else (lambda x: x)
    st = settings or SamplerSettings()
    b, n = species.shape
    dev = cond.device
    dtype = torch.float32
    n_atoms = mask.sum(1)
    frac = keep(torch.rand(b, n, 3, generator=generator, device=dev, dtype=dtype))
    lat = torch.randn(b, 6, generator=generator, device=dev, dtype=dtype)
    l_given = None if lattice is None else schedule.lat_encode(lattice.to(dev), n_atoms).to(dtype)
    ts = torch.linspace(1.0, st.t_min, st.steps + 1, dtype=dtype, device=dev)
    for i in range(st.steps):
        t, s = ts[i], ts[i + 1]
        tb = t.expand(b)
        ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
        sig_t, sig_s = schedule.sigma(t), schedule.sigma(s)
        if l_given is not None:
            lat = ab_t.sqrt() * l_given + (1 - ab_t).sqrt() * torch.randn(
                b, 6, generator=generator, device=dev, dtype=dtype
            )
        # corrector (Langevin on coordinates)
        px, _ = _predict(model, species, frac, lat, tb, cond, uncond, mask, st.guidance_scale)
        step = st.corrector_lr * sig_t**2
        score = px * schedule.score_norm(sig_t.reshape(1)).reshape(())
        frac = keep(
            wn.wrap(
                frac
                + step * score
                + (2 * step).sqrt() * torch.randn(frac.shape, generator=generator, dtype=dtype)
            )
        )
        # predictor
        px, pl = _predict(model, species, frac, lat, tb, cond, uncond, mask, st.guidance_scale)
        score = px * schedule.score_norm(sig_t.reshape(1)).reshape(())
        dvar = sig_t**2 - sig_s**2
        x0_lat = ((lat - (1 - ab_t).sqrt() * pl) / ab_t.sqrt()).clamp(-6, 6)
        if guidance is not None:
            x0_frac = wn.wrap(frac + sig_t**2 * score)

            def decode(z: Tensor) -> Tensor:
                return schedule.lat_decode(z, n_atoms)

            # lattice-given mode: the pattern is compared in the given cell, which is not nudged
            lat_for_guidance = x0_lat if l_given is None else l_given
            with torch.enable_grad():
                dfrac, dlat = guidance(species, mask, x0_frac, lat_for_guidance, decode, float(t))
            frac = frac + dfrac.to(dtype)
            if l_given is None:
                x0_lat = x0_lat + dlat.to(dtype)
        noise_x = torch.randn(frac.shape, generator=generator, dtype=dtype) if i < st.steps - 1 else 0.0
        frac = keep(wn.wrap(frac + dvar * score + dvar.sqrt() * noise_x))
        a_ts = ab_t / ab_s
        mean = (ab_s.sqrt() * (1 - a_ts) / (1 - ab_t)) * x0_lat + (
            a_ts.sqrt() * (1 - ab_s) / (1 - ab_t)
        ) * lat
        var = (1 - ab_s) / (1 - ab_t) * (1 - a_ts)
        noise_l = torch.randn(b, 6, generator=generator, dtype=dtype) if i < st.steps - 1 else 0.0
        lat = mean + var.clamp_min(0).sqrt() * noise_l
        if i == st.steps - 1:
            lat = x0_lat
    lattice_out = (
        lattice.to(dev).float() if lattice is not None else schedule.lat_decode(lat, n_atoms).float()
    )
    if st.min_distance > 0:
        frac = keep(separate_atoms(frac, lattice_out, mask, st.min_distance))
    frac = frac * mask[..., None]
    return CrystalTensors(species, frac, lattice_out, mask)


def separate_atoms(frac: Tensor, lattice: Tensor, mask: Tensor, d_min: float, steps: int = 60) -> Tensor:
    """Push apart atoms closer than ``d_min`` (Å, minimum image) by gradient steps on Σ relu(d_min − d)².

    A last clean-up of the reverse process (it only moves atoms that overlap; the rest stay put).
    """
    x = frac.detach().clone()
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    pm = (mask[:, :, None] & mask[:, None, :] & ~eye).to(x.dtype)
    lat = lattice.detach().to(x.dtype)
    inv_len = 1.0 / torch.linalg.norm(lat, dim=-1).clamp_min(1e-3)  # (B,3) Å⁻¹ per axis
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            d = wn.wrap_centered(x[:, None, :, :] - x[:, :, None, :])
            r = torch.linalg.norm(d @ lat[:, None], dim=-1).clamp_min(1e-6)
            pen = (torch.relu(d_min - r) ** 2 * pm).sum()
            if float(pen.detach()) < 1e-8:
                break
            (g,) = torch.autograd.grad(pen, x)
        x = wn.wrap(x.detach() - 0.25 * g * inv_len[:, None, :] ** 2)
    return x.detach()


def _lattice_matrix(lattice: object) -> np.ndarray:
    """(3,3) Å from a pymatgen Lattice, an array, or an object with ``.matrix``/``.lattice`` (indexing cells)."""
    if isinstance(lattice, Lattice):
        return lattice.matrix
    for attr in ("matrix", "lattice"):
        inner = getattr(lattice, attr, None)
        if inner is not None and not callable(inner):
            return _lattice_matrix(inner)
    params = getattr(lattice, "parameters", None)
    if params is not None and len(params) == 6:
        return Lattice.from_parameters(*[float(x) for x in params]).matrix
    arr = np.asarray(lattice, dtype=np.float64)
    if arr.shape == (6,):
        return Lattice.from_parameters(*arr.tolist()).matrix
    return arr


def composition_species(composition: str | Composition) -> list[int]:
    """Atomic numbers of every atom in the cell for a composition given with its Z (e.g. "Fe4O6")."""
    comp = Composition(composition) if isinstance(composition, str) else composition
    out: list[int] = []
    for el, amt in sorted(comp.items(), key=lambda kv: kv[0].Z):
        k = round(float(amt))
        if abs(float(amt) - k) > 1e-6 or k <= 0:
            raise UsageError(f"composition {comp.formula!r}: atom counts per cell must be whole numbers")
        out += [int(el.Z)] * k
    if len(out) > MAX_ATOMS:
        raise UsageError(
            f"composition {comp.formula!r} has {len(out)} atoms per cell; the generator handles ≤ {MAX_ATOMS}"
        )
    return out


def sample(
    pattern: Pattern | None,
    composition: str | Composition,
    n: int = 20,
    seed: int = 0,
    lattice: Lattice | np.ndarray | str | None = None,
    steps: int = 100,
    guidance_scale: float = 1.0,
    guidance: GuidanceHook | None = None,
    weights: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 128,
    spacegroups: Sequence[int] | None = None,
) -> list[Structure]:
    """Draw ``n`` candidate structures for ``pattern`` with the cell content ``composition`` (with Z).

    ``lattice`` (Å, rows a, b, c, e.g. from indexing) fixes the cell. ``lattice="index"`` reads the cell
    from ``pattern`` (:func:`~xrdsolve.generate.cells.indexed_cells`, ≤ 15 s): ``composition`` may then be a
    formula without Z, Z is the one that fills the indexed cell; when indexing finds no cell the lattice is
    sampled and ``composition`` is taken as the cell content. The same seed gives the same structures on
    the same machine. ``weights`` is a weights directory (default: the shipped model).

    Space-group-aware mode: with ``spacegroups`` (numbers, likeliest first) and a conventional cell
    (given, or indexed: then the extinction-compatible groups are used unless ``spacegroups`` is given),
    the samples walk the groups' Wyckoff assignments of the cell content, the coordinates kept on each
    assignment's sites at every step (:mod:`~xrdsolve.generate.symmetric`). Pass ``spacegroups=[]`` to
    sample without symmetry in an indexed cell.
    """
    from .weights import cached_default, load_weights

    if isinstance(lattice, str):
        if lattice != "index":
            raise UsageError(
                f"lattice must be a matrix, a pymatgen Lattice, None or 'index'; got {lattice!r}"
            )
        if pattern is None:
            raise UsageError("lattice='index' needs a pattern to index")
        from .cells import indexed_cells

        cells, _ = indexed_cells(pattern, composition)
        if cells:
            lattice, composition = cells[0].lattice, cells[0].cell_content
            if spacegroups is None:
                spacegroups = cells[0].spacegroups
        else:
            log.warning("indexing found no cell: the generator samples the lattice")
            lattice = None
    model, cfg, _ = cached_default(device) if weights is None else load_weights(weights, device)
    schedule = Schedule(cfg.diffusion)
    z = composition_species(composition)
    e = cfg.encoder
    grid = QGrid(e.q_min, e.q_max, e.n_points)
    pat = None if pattern is None else torch.as_tensor(preprocess(pattern, grid))[None].to(device)
    lat_t = None
    if lattice is not None:
        mat = _lattice_matrix(lattice)
        if mat.shape != (3, 3) or abs(np.linalg.det(mat)) < 1e-6:
            raise UsageError("lattice must be a non-degenerate 3×3 matrix (Å, rows a, b, c)")
        lat_t = torch.tensor(np.array(mat, dtype=np.float32))
    gen = torch.Generator().manual_seed(int(seed))
    settings = SamplerSettings(steps=steps, guidance_scale=guidance_scale)
    if spacegroups and lat_t is not None:
        from .symmetric import sample_on_templates, templates_for

        comp = Composition(composition) if isinstance(composition, str) else composition
        params = Lattice(lat_t.double().numpy()).parameters
        reduced, units = reduced_formula_and_units(comp)
        templates = templates_for(reduced, units, spacegroups, params, n)
        if not templates:
            raise UsageError(
                f"{comp.formula} fits no Wyckoff sites of space groups {list(spacegroups)} in this cell"
            )
        with torch.no_grad():
            return sample_on_templates(model, schedule, pat, templates, settings, gen, guidance, batch_size)
    out: list[Structure] = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            species = torch.tensor([z] * b, dtype=torch.long, device=device)
            mask = torch.ones_like(species, dtype=torch.bool)
            cond = model.condition(None if pat is None else pat.expand(b, -1, -1), species, mask)
            uncond = model.condition(None, species, mask) if guidance_scale != 1.0 else None
            res = reverse_process(
                model, schedule, species, mask, cond, uncond,
                settings, gen,
                None if lat_t is None else lat_t[None].expand(b, -1, -1), guidance,
            )  # fmt: skip
            out += res.to_structures()
    return out
