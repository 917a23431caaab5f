"""Batched, differentiable peak-group misfit of many Wyckoff trials of one space group in one cell.

:func:`xrdsolve.prescreen.group_intensities` judges pymatgen Structures: a Structure and a CrystalBatch
per trial, its reflections listed again for every batch. In one cell and one space group nearly all of
that is shared: the reflections (merged over the group's Laue orbits), their multiplicity,
Lorentz–polarisation, wavelength weights and shares of the peak groups, and (per assignment of atoms to
Wyckoff sites) each atom's form factor. Only the phases change, and they are linear in the assignment's
*general points* p (each atom a sits at R_a·p_site(a) + t_a). So for T trials

    F_t(h) = Σ_a f_a(h) exp(2πi (h·R_a·p_t,site(a) + h·t_a)),   I_tg = Σ_h |F_t(h)|² · K_b(h, g),

with K_b the reflection-to-group matrix for each overall B_iso b (Å²), is two dense tensor products — and
differentiable in p, so the best draws can be improved by gradient descent on the misfit (a local
optimisation from many starts, the step a direct-space search needs) rather than by random moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xrdsolve.prescreen import OVERALL_B, PeakGroups, group_shares, misfit_weights
from xrdsolve.random_candidates import WyckoffSampler, _group
from xrdsolve.refine.indexing.solution import CENTRING_TRANSLATIONS, centring_allows

#: A reflection whose share in the groups the misfit counts is at most this times its share in the groups
#: it ignores is left out (:func:`reflections_for`): only profile tails reach the counted groups.
OUTSIDE_SHARE_FLOOR = 1e-3

#: Adam steps and learning-rate range (general-point coordinates, fractions of the cell) of :meth:`minimise`.
MINIMISE_STEPS = 60
MINIMISE_LR = (0.02, 0.002)
#: Weight of the overlap penalty Σ (1 − d/d_min)² over pairs closer than their limit, against the misfit.
OVERLAP_WEIGHT = 0.5


@dataclass(frozen=True)
class GroupReflections:
    """Laue-merged reflections of one space group in one cell and their peak-group weights (shared by
    every assignment of that group in that cell)."""

    hkl: np.ndarray  # (H, 3)
    s2: np.ndarray  # (H,) (sinθ/λ)², Å⁻²
    weights: np.ndarray  # (nB, H, G) multiplicity · LP · wavelength weight · group share · Debye–Waller
    neutron: bool = False  # scattering lengths (constant in s) instead of X-ray form factors


def reflections_for(
    sampler: WyckoffSampler,
    groups: PeakGroups,
    instrument: Any,
    zero_shift: float,
    overall_b: Sequence[float] = OVERALL_B,
) -> GroupReflections:
    """The reflections of ``sampler``'s space group and cell reaching ``groups`` (peaks at Bragg 2θ +
    ``zero_shift``, degrees), with the weights of :class:`GroupReflections` for each overall B (Å²). Groups
    without weight in the misfit (:func:`~xrdsolve.prescreen.misfit_weights`) get no intensity, and the
    reflections inside them that reach the other groups only with profile tails (at most
    :data:`OUTSIDE_SHARE_FLOOR` of their share in them) are left out."""
    from xrdsolve.refine.physics.batch import CrystalBatch
    from xrdsolve.refine.physics.equivalents import merge_equivalent_reflections
    from xrdsolve.refine.physics.forward import default_hkl, flat_reflections

    template = CrystalBatch(
        lattice=torch.tensor(np.array(sampler.lattice.matrix), dtype=torch.float64)[None],
        frac=torch.zeros(1, 1, 3, dtype=torch.float64),
        species=torch.zeros(1, 1, dtype=torch.long),
        occ=torch.ones(1, 1, dtype=torch.float64),
        b_iso=torch.zeros(1, 1, dtype=torch.float64),
        mask=torch.ones(1, 1, dtype=torch.bool),
    )
    rotations = np.array([op.rotation_matrix for op in _group(sampler.spacegroup)[0].ops])
    hkl = merge_equivalent_reflections(
        *default_hkl(template, instrument, float(groups.upper[-1]), 0.5), [rotations]
    )
    with torch.no_grad():
        fr = flat_reflections(template, instrument, None, hkl)
    n_h, g = int(fr.d.shape[0]), len(groups)
    wt = np.asarray(instrument.radiation.normalized_weights)
    per_line = (fr.multiplicity.numpy()[:, None] * fr.lp.numpy() * wt[None, :]) * fr.valid.numpy()  # (H, L)
    tt = fr.two_theta.numpy() + zero_shift  # (H, L)
    rows = np.broadcast_to(np.arange(n_h)[:, None], tt.shape)
    share = np.zeros((n_h, g))
    for ok, jj, frac in group_shares(tt, groups):
        np.add.at(share, (rows[ok], jj[ok]), (per_line * frac)[ok])
    # groups the misfit ignores (too wide: misfit_weights 0) get no intensity, and a reflection with at most
    # OUTSIDE_SHARE_FLOOR of its share in such groups in counted ones is left out: a synchrotron pattern of
    # a large cell merges its high-angle lines into one such group of ten thousand reflections
    ignored = misfit_weights(groups) == 0
    in_ignored = share[:, ignored].sum(axis=1)
    share[:, ignored] = 0.0
    d = fr.d.numpy()
    damping = np.exp(-np.asarray(overall_b, dtype=float)[:, None] / (4.0 * d * d)[None, :])  # (nB, H)
    keep = share.any(axis=1) & (share.sum(axis=1) > OUTSIDE_SHARE_FLOOR * in_ignored)
    return GroupReflections(
        hkl=fr.hkl.numpy()[keep],
        s2=(0.25 / (d * d))[keep],
        weights=damping[:, keep, None] * share[None, keep, :],
        neutron=bool(instrument.is_neutron),
    )


class TrialScorer:
    """Peak-group misfit (:func:`xrdsolve.prescreen.misfit`, lowest over the overall B values) of trials of
    several :class:`~xrdsolve.random_candidates.WyckoffSampler` assignments of one space group in one cell
    (``reflections`` from :func:`reflections_for` with the same groups), in float32 torch.

    A trial is general points (sites_max, 3) — rows past its assignment's own sites are ignored — and the
    index of its assignment in ``samplers``; atoms are padded to the largest assignment (zero scattering,
    no overlap)."""

    def __init__(
        self, samplers: Sequence[WyckoffSampler], groups: PeakGroups, reflections: GroupReflections
    ) -> None:
        from xrdsolve.refine.physics.scattering import form_factor, neutron_lengths

        dtype = torch.float32
        self.samplers = list(samplers)
        maps = [s.atom_maps() for s in self.samplers]
        self.n_sites = max(s.n_sites for s in self.samplers)
        # structure factors from one atom per lattice-centring coset (× the coset size), on the reflections
        # the centring allows: the others are zero for every trial
        centring = centring_vectors(self.samplers[0].spacegroup)
        allowed = centring_allows(_lattice_letter(self.samplers[0].spacegroup), reflections.hkl)
        cosets = [coset_representatives(st, r, t, centring) for st, r, t in maps]
        full = _padded_maps(maps, [np.arange(len(st)) for st, _, _ in maps], self.samplers)
        reduced = _padded_maps(
            maps,
            [np.arange(len(m[0])) if c is None else c for m, c in zip(maps, cosets, strict=True)],
            self.samplers,
        )
        weight = np.array([1.0 if c is None else float(len(centring)) for c in cosets])
        site, rot, shift, species, real = reduced
        n_j, n_atoms = site.shape
        s2 = torch.as_tensor(reflections.s2[allowed], dtype=torch.float64)[None]
        # one scattering factor per element, then gathered per atom (a large cell has thousands of atoms)
        elements, which = np.unique(species.reshape(-1), return_inverse=True)
        unique = torch.as_tensor(elements.reshape(1, -1))
        if reflections.neutron:  # coherent scattering lengths (fm), the same at every s
            per_element = neutron_lengths(unique, torch.float64).expand(s2.shape[1], -1)  # (H, E)
        else:
            per_element = form_factor(unique, s2)[0]  # (H, E)
        f = per_element.T[torch.as_tensor(which)].reshape(n_j, n_atoms, -1)  # (J, A, H)
        f = f * torch.as_tensor(real * weight[:, None])[..., None]
        self._f = f.to(dtype).contiguous()  # (J, A, H)
        self._site = torch.as_tensor(site)
        self._rot = torch.as_tensor(rot, dtype=dtype)
        self._shift = torch.as_tensor(shift, dtype=dtype)
        site, rot, shift, _, _ = full
        limit = np.zeros(site.shape + site.shape[1:])
        for j, sampler in enumerate(self.samplers):
            a = len(sampler.labels)
            limit[j, :a, :a] = sampler.distance_limits
        self._all_site = torch.as_tensor(site)
        self._all_rot = torch.as_tensor(rot, dtype=dtype)
        self._all_shift = torch.as_tensor(shift, dtype=dtype)
        self._limit = torch.as_tensor(limit, dtype=dtype)
        hkl = reflections.hkl[allowed].astype(float)
        self._hkl = torch.as_tensor(2 * np.pi * hkl, dtype=dtype)  # 2π h (H, 3)
        self._weights = torch.as_tensor(reflections.weights[:, allowed], dtype=dtype)  # (nB, H, G)
        obs = groups.observed
        w = misfit_weights(groups)
        self._obs = torch.as_tensor(obs, dtype=dtype)
        self._w = torch.as_tensor(w / max(float((w * obs * obs).sum()), 1e-300), dtype=dtype)
        self._matrix = torch.as_tensor(np.array(self.samplers[0].lattice.matrix), dtype=dtype)

    @property
    def n_reflections(self) -> int:
        return int(self._f.shape[2])

    def _frac(self, points: Tensor, which: Tensor, every_atom: bool = False) -> Tensor:
        """(T, A, 3) fractional coordinates (not wrapped) of each trial's atoms: one per centring coset, or
        with ``every_atom`` all of them."""
        site, rot, shift = (
            (self._all_site, self._all_rot, self._all_shift)
            if every_atom
            else (self._site, self._rot, self._shift)
        )
        index = site.index_select(0, which)  # (T, A)
        p = torch.gather(points, 1, index[..., None].expand(-1, -1, 3))
        return torch.einsum("taij,taj->tai", rot.index_select(0, which), p) + shift.index_select(0, which)

    def group_intensities(self, points: Tensor, which: Tensor) -> Tensor:
        """(nB, T, G) calculated group intensities of trials: general points (T, sites_max, 3) of the
        assignments ``which`` (T,)."""
        phase = self._frac(points.to(torch.float32), which) @ self._hkl.T  # (T, A, H)
        f = self._f.index_select(0, which)
        re = (torch.cos(phase) * f).sum(1)
        im = (torch.sin(phase) * f).sum(1)
        return torch.einsum("th,bhg->btg", re * re + im * im, self._weights)

    def misfit(self, points: Tensor, which: Tensor) -> Tensor:
        """(T,) weighted misfit with the best scale ≥ 0, lowest over the overall B values (0 perfect)."""
        calc = self.group_intensities(points, which)
        num = (calc * (self._w * self._obs)).sum(-1)
        den = (calc * calc * self._w).sum(-1)
        scale = torch.clamp(num / torch.where(den > 0, den, torch.ones_like(den)), min=0.0)
        resid = self._obs - scale[..., None] * calc
        return (self._w * resid * resid).sum(-1).min(dim=0).values

    def overlap(self, points: Tensor, which: Tensor) -> Tensor:
        """(T,) Σ over atom pairs of (1 − d/d_min)² where the nearest image (rounded fractional difference)
        is closer than the pair's limit d_min."""
        frac = self._frac(points.to(torch.float32), which, every_atom=True)
        diff = frac[:, :, None, :] - frac[:, None, :, :]
        diff = diff - torch.round(diff)
        dist = torch.linalg.norm(diff @ self._matrix, dim=-1)
        limit = self._limit.index_select(0, which)
        short = torch.clamp(1.0 - dist / torch.clamp(limit, min=1e-6), min=0.0) * (limit > 0)
        return 0.5 * (short * short).sum((1, 2))

    def _penalised(self, points: Tensor, which: Tensor) -> Tensor:
        return self.misfit(points, which) + OVERLAP_WEIGHT * self.overlap(points, which)

    def score(
        self, points: np.ndarray, which: np.ndarray, chunk: int = 256, penalised: bool = False
    ) -> np.ndarray:
        """(T,) misfit of trials (general points (T, sites_max, 3), assignments ``which`` (T,)), in chunks
        of ``chunk``; with ``penalised`` plus :data:`OVERLAP_WEIGHT` × :meth:`overlap` (what
        :meth:`minimise` descends on)."""
        out = []
        with torch.no_grad():
            for start in range(0, len(points), chunk):
                p = torch.as_tensor(points[start : start + chunk])
                w = torch.as_tensor(which[start : start + chunk], dtype=torch.long)
                value = self._penalised(p, w) if penalised else self.misfit(p, w)
                out.append(value.double().numpy())
        return np.concatenate(out) if out else np.empty(0)

    def minimise(
        self,
        points: np.ndarray,
        which: np.ndarray,
        steps: int = MINIMISE_STEPS,
        lr: tuple[float, float] = MINIMISE_LR,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trials moved downhill on misfit + overlap penalty (Adam, learning rate decaying geometrically from
        ``lr[0]`` to ``lr[1]``), each independently; returns the general points (wrapped to [0, 1)) and
        their penalised misfit (:meth:`score` with ``penalised``)."""
        p = torch.as_tensor(points, dtype=torch.float32).clone().requires_grad_(True)
        w = torch.as_tensor(which, dtype=torch.long)
        # Adam by hand (torch.optim's first use costs a second of imports; the solve pays it every time)
        first = torch.zeros_like(p)
        second = torch.zeros_like(p)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        decay = (lr[1] / lr[0]) ** (1.0 / max(1, steps - 1))
        for step in range(1, steps + 1):
            (grad,) = torch.autograd.grad(self._penalised(p, w).sum(), p)
            with torch.no_grad():
                first.mul_(beta1).add_(grad, alpha=1 - beta1)
                second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                rate = lr[0] * decay ** (step - 1) / (1 - beta1**step)
                p -= rate * first / (torch.sqrt(second / (1 - beta2**step)) + eps)
        moved = np.mod(p.detach().double().numpy(), 1.0)
        return moved, self.score(moved, which, penalised=True)


def centring_vectors(spacegroup: int) -> np.ndarray:
    """(n, 3) lattice-centring translations (fractional; the zero vector first) of a space group in its
    standard setting (pyxtal's, whose operations the samplers use): 1 for P, 2 for C, A, I, 3 for R
    (hexagonal axes), 4 for F — the project's table for the group's lattice letter (the same translations as
    its operations with identity rotation, for all 230 groups)."""
    return np.array([(0.0, 0.0, 0.0), *CENTRING_TRANSLATIONS[_lattice_letter(spacegroup)]])


def _lattice_letter(spacegroup: int) -> str:
    """The lattice letter (P, A, B, C, I, F or R) of the group's Hermann–Mauguin symbol."""
    return str(_group(spacegroup).symbol[0])


def coset_representatives(
    site: np.ndarray, rotation: np.ndarray, shift: np.ndarray, centring: np.ndarray
) -> np.ndarray | None:
    """Indices of one atom per centring coset of an assignment's atoms (``site``, ``rotation``, ``shift`` of
    :meth:`~xrdsolve.random_candidates.WyckoffSampler.atom_maps`): the atoms whose maps differ only by a
    vector of ``centring`` (modulo 1). None when the atoms do not fall into cosets of ``len(centring)``."""
    n_c = len(centring)
    covered = np.zeros(len(site), dtype=bool)
    kept = []
    for a in range(len(site)):
        if covered[a]:
            continue
        same = (site == site[a]) & np.all(np.isclose(rotation, rotation[a]), axis=(1, 2))
        diff = (shift[:, None, :] - shift[a]) - centring[None]  # (A, n_c, 3)
        by = same[:, None] & np.all(np.abs(diff - np.round(diff)) < 1e-6, axis=2)
        members = np.flatnonzero(by.any(axis=1))
        if len(members) != n_c or not by.any(axis=0).all() or covered[members].any():
            return None
        covered[members] = True
        kept.append(a)
    return np.array(kept, dtype=np.int64)


def _padded_maps(
    maps: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    chosen: Sequence[np.ndarray],
    samplers: Sequence[WyckoffSampler],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Site (J, A), rotation (J, A, 3, 3), shift (J, A, 3), species index (J, A) and a real-atom mask (J, A)
    of the atoms ``chosen[j]`` of each assignment j, padded to the most atoms (zero scattering)."""
    from xrdsolve.refine.physics.scattering import species_index

    n_j, n_atoms = len(maps), max(len(c) for c in chosen)
    site = np.zeros((n_j, n_atoms), dtype=np.int64)
    rot = np.zeros((n_j, n_atoms, 3, 3))
    shift = np.zeros((n_j, n_atoms, 3))
    species = np.zeros((n_j, n_atoms), dtype=np.int64)
    real = np.zeros((n_j, n_atoms), dtype=bool)
    for j, ((st, r, t), c, sampler) in enumerate(zip(maps, chosen, samplers, strict=True)):
        a = len(c)
        site[j, :a], rot[j, :a], shift[j, :a], real[j, :a] = st[c], r[c], t[c], True
        species[j, :a] = [species_index(sampler.labels[i]) for i in c]
    return site, rot, shift, species, real


__all__ = ["GroupReflections", "TrialScorer", "centring_vectors", "coset_representatives", "reflections_for"]
