"""Space-group-aware sampling: the reverse process kept on a Wyckoff template (a space group, an
assignment of the atoms to its Wyckoff sites and a cell), in the style of DiffCSP++.

Every atom is one image of its site's free point v (fractional, conventional cell): x = R v + t with the
Wyckoff position's operation (R, t). After every update of the coordinates the sample is projected back
onto the template: each site's v is fitted to its atoms by periodic least squares (Gauss–Newton on the
wrapped residuals) and the orbit is rebuilt, so special positions stay special and the orbit keeps the
group's symmetry. The denoiser itself is the unchanged P1 network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Composition, Element, Lattice, Structure
from torch import Tensor

from xrdsolve.random_candidates import WyckoffStep, permuted_cell, wyckoff_plan

from . import wrapped_normal as wn
from .diffusion import Schedule
from .model import GeneratorModel
from .sampler import GuidanceHook, SamplerSettings, reverse_process


@dataclass(frozen=True)
class WyckoffTemplate:
    """Space group ``spacegroup`` (standard setting) with ``sites``: (element symbol, Wyckoff label) per
    occupied site, in the cell ``parameters`` a, b, c (Å), α, β, γ (degrees)."""

    spacegroup: int
    sites: tuple[tuple[str, str], ...]
    parameters: tuple[float, float, float, float, float, float]

    def orbits(self) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Per atom: atomic number, site index, rotation R (3,3) and translation t (3,) of its operation."""
        from pyxtal.symmetry import Group

        group = Group(self.spacegroup)
        z: list[int] = []
        site: list[int] = []
        rot: list[np.ndarray] = []
        trans: list[np.ndarray] = []
        for s, (symbol, label) in enumerate(self.sites):
            for op in group.get_wyckoff_position(label).ops:
                z.append(Element(symbol).Z)
                site.append(s)
                rot.append(np.asarray(op.rotation_matrix, dtype=float))
                trans.append(np.asarray(op.translation_vector, dtype=float))
        return z, np.array(site), np.stack(rot), np.stack(trans)

    def lattice(self) -> np.ndarray:
        """(3,3) Å, rows a, b, c."""
        return np.array(Lattice.from_parameters(*self.parameters).matrix)


def templates_from_plan(
    plan: Sequence[WyckoffStep],
    species: Sequence[str],
    lattice: Sequence[float],
) -> list[WyckoffTemplate]:
    """Templates of a Wyckoff plan (space group, site labels per species, axis order), as walked by
    :func:`xrdsolve.random_candidates.wyckoff_plan`, in the cell ``lattice`` (a, b, c Å, α, β, γ °)."""
    out = []
    for sg, combo, perm in plan:
        sites = tuple((sp, label) for sp, labels in zip(species, combo, strict=True) for label in labels)
        out.append(WyckoffTemplate(int(sg), sites, permuted_cell(lattice, perm)))  # type: ignore[arg-type]
    return out


class SymmetryProjector:
    """Projects a padded batch of fractional coordinates (B,N,3) onto each row's Wyckoff template."""

    def __init__(self, site: Tensor, rot: Tensor, trans: Tensor, mask: Tensor, iterations: int = 3) -> None:
        b, n = mask.shape
        self.shape = (b, n)
        self.mask = mask.reshape(-1)
        n_sites = int(site.max()) + 1 if site.numel() else 1
        self.gid = (site + n_sites * torch.arange(b)[:, None]).reshape(-1).clamp_min(0)
        self.n_groups = b * n_sites
        self.rot = rot.reshape(-1, 3, 3)
        self.trans = trans.reshape(-1, 3)
        m = self.mask.to(rot.dtype)[:, None, None]
        normal = torch.zeros(self.n_groups, 3, 3, dtype=rot.dtype)
        normal.index_add_(0, self.gid, m * self.rot.transpose(1, 2) @ self.rot)
        self.normal_pinv = torch.linalg.pinv(normal)
        # each site's first atom starts the fit
        first = torch.full((self.n_groups,), -1, dtype=torch.long)
        idx = torch.arange(b * n)
        order = torch.argsort(self.gid * (b * n) + idx)  # atoms grouped by site, in atom order
        valid = self.mask[order]
        gids = self.gid[order][valid]
        atoms = idx[order][valid]
        is_first = torch.ones_like(gids, dtype=torch.bool)
        is_first[1:] = gids[1:] != gids[:-1]
        first[gids[is_first]] = atoms[is_first]
        self.first = first.clamp_min(0)
        self.iterations = iterations

    @classmethod
    def from_templates(
        cls, templates: Sequence[WyckoffTemplate], dtype: torch.dtype = torch.float32
    ) -> tuple[SymmetryProjector, Tensor, Tensor, Tensor]:
        """Projector, atomic numbers (B,N), mask (B,N) and lattices (B,3,3) Å for one sample per template."""
        orbits = [t.orbits() for t in templates]
        n = max(len(o[0]) for o in orbits)
        b = len(templates)
        species = torch.zeros(b, n, dtype=torch.long)
        site = torch.zeros(b, n, dtype=torch.long)
        rot = torch.zeros(b, n, 3, 3, dtype=dtype)
        trans = torch.zeros(b, n, 3, dtype=dtype)
        for i, (z, s, r, t) in enumerate(orbits):
            k = len(z)
            species[i, :k] = torch.tensor(z)
            site[i, :k] = torch.as_tensor(s)
            rot[i, :k] = torch.as_tensor(r, dtype=dtype)
            trans[i, :k] = torch.as_tensor(t, dtype=dtype)
        mask = species > 0
        lattices = torch.tensor(np.stack([t.lattice() for t in templates]), dtype=dtype)
        return cls(site, rot, trans, mask), species, mask, lattices

    def free_points(self, frac: Tensor) -> Tensor:
        """Each site's fitted free point v (B·S,3): argmin Σ |wrap(x − (R v + t))|² over its atoms."""
        x = frac.reshape(-1, 3).to(self.rot.dtype)
        m = self.mask.to(x.dtype)[:, None]
        v = x[self.first]
        for _ in range(self.iterations):
            pred = (self.rot @ v[self.gid][..., None])[..., 0] + self.trans
            r = wn.wrap_centered(x - pred) * m
            rhs = torch.zeros(self.n_groups, 3, dtype=x.dtype)
            rhs.index_add_(0, self.gid, (self.rot.transpose(1, 2) @ r[..., None])[..., 0])
            v = v + (self.normal_pinv @ rhs[..., None])[..., 0]
        return v

    def __call__(self, frac: Tensor) -> Tensor:
        v = self.free_points(frac)
        out = wn.wrap((self.rot @ v[self.gid][..., None])[..., 0] + self.trans)
        out = out * self.mask.to(out.dtype)[:, None]
        return out.reshape(*self.shape, 3).to(frac.dtype)


def merge_orbit_images(structures: Sequence[Structure]) -> list[Structure]:
    """``structures`` with atoms that sit on the same point (an orbit's coinciding images) merged, in place."""
    for s in structures:
        s.merge_sites(tol=1e-3, mode="delete")
    return list(structures)


def sample_on_templates(
    model: GeneratorModel,
    schedule: Schedule,
    pattern: Tensor | None,
    templates: Sequence[WyckoffTemplate],
    settings: SamplerSettings,
    generator: torch.Generator | None = None,
    guidance: GuidanceHook | None = None,
    batch_size: int = 64,
) -> list[Structure]:
    """One sample per template: the reverse process in the template's cell with the coordinates projected
    onto its Wyckoff sites after every update. ``pattern`` is the encoder-grid pattern (1,C,P) or None."""
    out: list[Structure] = []
    for start in range(0, len(templates), batch_size):
        chunk = templates[start : start + batch_size]
        proj, species, mask, lattices = SymmetryProjector.from_templates(chunk)
        b = len(chunk)
        cond = model.condition(None if pattern is None else pattern.expand(b, -1, -1), species, mask)
        uncond = model.condition(None, species, mask) if settings.guidance_scale != 1.0 else None
        res = reverse_process(
            model, schedule, species, mask, cond, uncond, settings, generator, lattices, guidance, proj
        )
        out += merge_orbit_images(res.to_structures())
    return out


def templates_for(
    composition: Composition, z: int, spacegroups: Sequence[int], parameters: Sequence[float], n: int
) -> list[WyckoffTemplate]:
    """``n`` templates walking the Wyckoff plan of ``composition`` × ``z`` in ``spacegroups`` (likeliest
    first) and the cell ``parameters`` (a, b, c Å, α, β, γ °) cyclically, as the enumerated random
    candidates do; empty when the atoms fit no group's sites."""
    species, plan = wyckoff_plan(composition, z, spacegroups, parameters)
    if not plan:
        return []
    steps = [plan[i % len(plan)] for i in range(n)]
    return templates_from_plan(steps, species, parameters)
