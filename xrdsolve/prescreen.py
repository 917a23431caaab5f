"""Prescreening in an indexed cell: many Wyckoff draws, ranked by their peak-group intensities.

A direct-space search needs many trial structures but a full-profile fit of each is too dear. In an
indexed cell the reflection positions are known, so the pattern is cut into *peak groups* — stretches of
2θ that hold reflections, separated by stretches of background — and each group's integrated intensity
is measured once (background interpolated from the stretches between groups). A trial structure is then
judged by the weighted misfit of its calculated group intensities (|F|², multiplicity, LP, Kα1 + Kα2),
with the best scale and an overall B_iso: one batched structure-factor pass for hundreds of trials, no
profile and no refinement. The best trials go on to the screening fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition, Structure

from xrdsolve.conditioning.peaks import find_peaks
from xrdsolve.random_candidates import CandidateSpec, WyckoffSampler, permuted_cell, wyckoff_plan

#: Half-width of the window kept around each reflection, in FWHM.
GROUP_HALF_WIDTH_FWHM = 2.5
#: Width (degrees 2θ of background points) of the running median and mean that smooth the background.
BACKGROUND_WINDOW_DEG = 1.0
#: Lorentzian share of the pseudo-Voigt assumed when sharing a reflection's intensity between groups.
PROFILE_ETA = 0.5
#: Groups on either side of its own that a reflection's profile tails may reach.
NEIGHBOUR_GROUPS = 2
#: Relative uncertainty added to every observed group intensity (profile, absorption and texture effects
#: the misfit does not model), so the strongest groups do not decide alone.
RELATIVE_ERROR_FLOOR = 0.05
#: Overall B_iso values (Å²) tried for every trial; the lowest misfit counts.
OVERALL_B = (0.0, 0.8, 2.0)
#: Trials drawn per Wyckoff assignment with free coordinates (fewer when there are many assignments).
MAX_DRAWS_PER_ASSIGNMENT = 48
#: Trials scored per cell and Z by default (about 1 ms each).
MAX_DRAWS_PER_PLAN = 1500
#: Trials scored at once; a time limit is checked between such chunks (tens of ms per trial in big cells).
SCORE_CHUNK = 64
#: Assignments whose best draw is improved by a local search with the second half of the draws.
FOCUS_ASSIGNMENTS = 8
#: Standard deviations (in general-point coordinates, i.e. fractions of the cell) of the local search's
#: successive rounds of random moves; a move is kept when it lowers the misfit.
LOCAL_STEPS = (0.08, 0.06, 0.045, 0.035, 0.027, 0.02, 0.015, 0.011, 0.008, 0.006)
#: Assignments considered per cell and Z (groups in hint order, each's assignments simplest first).
MAX_ASSIGNMENTS = 160


@dataclass(frozen=True)
class PeakGroups:
    """Stretches of 2θ (degrees) holding the reflections of one cell and their observed intensities.

    lower, upper (G,): group bounds, degrees 2θ (observed scale: zero shift included); observed (G,):
    background-subtracted integrated intensity (pattern units × degrees); variance (G,) of ``observed``;
    fwhm (f0, f1): the peak width model FWHM(2θ) = f0 + f1·tanθ, degrees 2θ.
    """

    lower: np.ndarray
    upper: np.ndarray
    observed: np.ndarray
    variance: np.ndarray
    fwhm: tuple[float, float]

    def __len__(self) -> int:
        return int(self.lower.size)


def fwhm_model(pattern: Any) -> tuple[float, float]:
    """(f0, f1) of FWHM(2θ) ≈ f0 + f1·tanθ (degrees 2θ), fitted to the pattern's peaks (floored at f0)."""
    peaks = find_peaks(pattern)
    step = float(np.median(np.diff(pattern.two_theta)))
    if len(peaks) < 2:
        return max(0.1, 5 * step), 0.0
    tan = np.tan(np.radians(peaks.two_theta / 2))
    fw = np.clip(peaks.fwhm, 2 * step, None)
    f1, f0 = np.polyfit(tan, fw, 1) if len(peaks) >= 4 else (0.0, float(np.median(fw)))
    if f0 <= 0 or f1 < 0:
        f0, f1 = float(np.median(fw)), 0.0
    return float(f0), float(f1)


def peak_groups(pattern: Any, positions: np.ndarray, fwhm: tuple[float, float]) -> PeakGroups:
    """Peak groups of reflections at ``positions`` (degrees 2θ, observed scale, every wavelength).

    Each reflection claims ±:data:`GROUP_HALF_WIDTH_FWHM` FWHM; overlapping claims merge. The background
    under a group is interpolated through the points outside all groups, smoothed by a running median and
    mean over :data:`BACKGROUND_WINDOW_DEG`.
    """
    from scipy.ndimage import median_filter, uniform_filter1d

    tt, y, sigma = pattern.two_theta, pattern.intensity, pattern.sigma
    pos = np.sort(positions[(positions > tt[0]) & (positions < tt[-1])])
    if pos.size == 0:
        empty = np.empty(0)
        return PeakGroups(empty, empty, empty, empty, fwhm)
    half = GROUP_HALF_WIDTH_FWHM * (fwhm[0] + fwhm[1] * np.tan(np.radians(pos / 2)))
    lo, hi = pos - half, pos + half
    new = np.r_[True, lo[1:] > np.maximum.accumulate(hi)[:-1]]
    start = np.flatnonzero(new)
    lower = lo[start]
    upper = np.maximum.reduceat(hi, start)
    j = np.searchsorted(lower, tt, side="right") - 1  # the group starting last at or before each point
    in_group = (j >= 0) & (tt <= upper[np.clip(j, 0, None)])
    background = ~in_group
    if background.sum() >= 5:
        size = max(5, round(BACKGROUND_WINDOW_DEG / float(np.median(np.diff(tt)))))
        bg_y = uniform_filter1d(median_filter(y[background], size=size, mode="nearest"), size, mode="nearest")
        bg = np.interp(tt, tt[background], bg_y)
    else:  # reflections everywhere: a low envelope
        bg = np.full_like(y, np.percentile(y, 5))
    step = np.gradient(tt)
    net = (y - bg) * step
    var = (sigma * step) ** 2
    gi = np.where(in_group, j, len(lower))
    observed = np.bincount(gi, net, minlength=len(lower) + 1)[:-1]
    variance = np.bincount(gi, var, minlength=len(lower) + 1)[:-1]
    return PeakGroups(lower, upper, observed, variance, fwhm)


def group_intensities(
    structures: Sequence[Structure],
    groups: PeakGroups,
    instrument: Any,
    zero_shift: float,
    overall_b: Sequence[float] = OVERALL_B,
) -> np.ndarray:
    """(len(overall_b), N, G) calculated integrated intensity of every structure in every peak group.

    Reflections of every wavelength of ``instrument`` at their Bragg 2θ + ``zero_shift`` (degrees);
    intensities with multiplicity, LP and wavelength weights, damped by exp(−B / (4d²)) for each overall
    B_iso B (Å²; d in Å), each shared among the groups its pseudo-Voigt profile (the groups' FWHM model,
    :data:`PROFILE_ETA`) covers.
    """
    from xrdsolve.refine.physics.batch import CrystalBatch
    from xrdsolve.refine.physics.forward import default_hkl, flat_reflections

    n, g = len(structures), len(groups)
    out = np.zeros((len(overall_b), n, g))
    if n == 0 or g == 0:
        return out
    crystals = CrystalBatch.from_structures(list(structures), dtype=torch.float32)
    with torch.no_grad():
        hkl = default_hkl(crystals, instrument, float(groups.upper[-1]), margin=0.5)
        fr = flat_reflections(crystals, instrument, None, hkl)
    tt = fr.two_theta.double().numpy() + zero_shift  # (T, L)
    inten = np.where(fr.valid.numpy(), fr.intensity.double().numpy(), 0.0)
    d = fr.d.double().numpy()
    crystal = fr.crystal.numpy()[:, None] * np.ones_like(tt, dtype=int)
    width = groups.fwhm[0] + groups.fwhm[1] * np.tan(np.radians(tt / 2))
    own = np.searchsorted(groups.lower, tt, side="right") - 1
    # each reflection's profile share in its own group and the neighbouring ones (tails, Kα2)
    index_parts, fraction_parts, row_parts = [], [], []
    for k in range(-NEIGHBOUR_GROUPS, NEIGHBOUR_GROUPS + 1):
        j = own + k
        ok = (j >= 0) & (j < g)
        jj = np.clip(j, 0, g - 1)
        frac = _pseudo_voigt_cdf(groups.upper[jj] - tt, width) - _pseudo_voigt_cdf(
            groups.lower[jj] - tt, width
        )
        index_parts.append((crystal * g + jj)[ok])
        fraction_parts.append(frac[ok])
        row_parts.append(np.nonzero(ok))
    index = np.concatenate(index_parts)
    fraction = np.concatenate(fraction_parts)
    for k, b in enumerate(overall_b):
        weighted = inten * np.exp(-float(b) / (4.0 * d * d))[:, None]
        values = np.concatenate([weighted[rows] for rows in row_parts]) * fraction
        out[k] = np.bincount(index, values, minlength=n * g).reshape(n, g)
    return out


def _pseudo_voigt_cdf(x: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Fraction of a pseudo-Voigt (FWHM ``fwhm``, Lorentzian share :data:`PROFILE_ETA`) below offset x
    (degrees 2θ) from its centre."""
    from scipy.special import erf

    lorentz = 0.5 + np.arctan(2.0 * x / fwhm) / np.pi
    gauss = 0.5 * (1.0 + erf(x * 2.0 * np.sqrt(np.log(2.0)) / fwhm))
    return PROFILE_ETA * lorentz + (1.0 - PROFILE_ETA) * gauss


def misfit(calculated: np.ndarray, groups: PeakGroups) -> np.ndarray:
    """Weighted misfit Σw(I_obs − s·I_calc)² / Σw·I_obs² with the best scale s ≥ 0, per structure;
    ``calculated`` (..., N, G) → (..., N). 0 is a perfect match, 1 no better than zero intensity."""
    obs = groups.observed
    w = 1.0 / (groups.variance + (RELATIVE_ERROR_FLOOR * np.abs(obs)) ** 2 + 1e-300)
    num = (calculated * (w * obs)).sum(-1)
    den = (calculated * calculated * w).sum(-1)
    scale = np.clip(num / np.where(den > 0, den, 1.0), 0.0, None)
    resid = obs - scale[..., None] * calculated
    return (w * resid * resid).sum(-1) / max(float((w * obs * obs).sum()), 1e-300)


def prescreened_structures(
    pattern: Any,
    composition: Composition,
    z: int,
    spacegroups: Sequence[int],
    n: int,
    *,
    lattice: Sequence[float],
    zero_shift: float,
    instrument: Any,
    seed: int = 0,
    fwhm: tuple[float, float] | None = None,
    max_draws: int = MAX_DRAWS_PER_PLAN,
    stop_at: float | None = None,
) -> list[tuple[Structure, CandidateSpec]]:
    """The ``n`` best of many Wyckoff draws of ``composition`` × ``z`` in an indexed cell.

    ``lattice`` a, b, c (Å), α, β, γ (degrees) and ``zero_shift`` (degrees 2θ) from indexing. About
    ``max_draws`` trials are scored by :func:`misfit`, in thirds: draws of each of the first
    :data:`MAX_ASSIGNMENTS` assignments of :func:`~xrdsolve.random_candidates.wyckoff_plan` (at most
    :data:`MAX_DRAWS_PER_ASSIGNMENT` each); more draws of the :data:`FOCUS_ASSIGNMENTS` best assignments
    with free coordinates; random moves (:data:`LOCAL_STEPS`) of the best draw of each of those, kept when
    they fit better. The best draw of each assignment comes first (best assignments first), then the
    second best of each, and so on — so that ``n`` candidates cover ``n`` assignments when there are
    that many. Each spec records ``prescreen_misfit`` and ``drawn`` (how many trials were scored).
    With ``stop_at`` (a ``time.perf_counter()`` value), the steps after the first are skipped once it has
    passed, and the first stops drawing and scoring (its first :data:`SCORE_CHUNK` trials are always scored).
    """
    species, plan = wyckoff_plan(composition, z, spacegroups, lattice)
    plan = plan[:MAX_ASSIGNMENTS]
    if not plan or n <= 0:
        return []
    rng = np.random.default_rng(seed)
    samplers = [WyckoffSampler(sg, species, combo, permuted_cell(lattice, perm)) for sg, combo, perm in plan]
    trials: list[Structure] = []
    points: list[np.ndarray] = []
    step_of: list[int] = []
    third = max_draws // 3
    per = max(1, min(MAX_DRAWS_PER_ASSIGNMENT, third // len(plan)))

    def late() -> bool:
        return stop_at is not None and time.perf_counter() > stop_at

    def draw(j: int, count: int) -> list[Structure]:
        """``count`` draws of assignment ``j``, their general points and assignment recorded."""
        p, drawn = samplers[j].draw(rng, count)
        points.extend(p)
        step_of.extend([j] * len(drawn))
        return drawn

    for j in range(len(samplers)):
        if trials and late():
            break
        trials.extend(draw(j, per))
    if not trials:
        return []
    lam = instrument.radiation.wavelengths
    positions = _lattice_positions(trials[0], lam, float(pattern.two_theta[-1])) + zero_shift
    groups = peak_groups(pattern, positions, fwhm or fwhm_model(pattern))

    def score(structures: Sequence[Structure]) -> np.ndarray:
        return misfit(group_intensities(structures, groups, instrument, zero_shift), groups).min(axis=0)

    # the first draws are scored in chunks so a time limit holds in large cells too (tens of ms per trial)
    chunks = [score(trials[:SCORE_CHUNK])]
    for start in range(SCORE_CHUNK, len(trials), SCORE_CHUNK):
        if late():
            break
        chunks.append(score(trials[start : start + SCORE_CHUNK]))
    scores = np.concatenate(chunks)
    del trials[len(scores) :], points[len(scores) :], step_of[len(scores) :]
    evaluated = len(trials)

    def best_free_assignments() -> list[int]:
        """Trial index of the best draw of each of the FOCUS_ASSIGNMENTS best assignments with free
        coordinates."""
        chosen: list[int] = []
        for i in np.argsort(scores, kind="stable"):
            if samplers[step_of[i]].has_free_coordinates and step_of[i] not in {step_of[k] for k in chosen}:
                chosen.append(int(i))
            if len(chosen) == FOCUS_ASSIGNMENTS:
                break
        return chosen

    # second third: more random draws for the most promising assignments
    focus = [step_of[i] for i in best_free_assignments()] if not late() else []
    if focus:
        new = [s for j in focus for s in draw(j, max(1, third // len(focus)))]
        if new:
            scores = np.concatenate([scores, score(new)])
            trials.extend(new)
            evaluated += len(new)
    # last third: the best draw of each of those is improved by random moves, kept when they fit better
    seeds = best_free_assignments() if not late() else []
    if seeds:
        copies = max(1, third // (len(seeds) * len(LOCAL_STEPS)))
        for i in seeds:
            sampler = samplers[step_of[i]]
            for sigma in LOCAL_STEPS:
                # each copy moves one site (moving all at once mostly spoils the sites already right)
                step = rng.normal(0.0, sigma, (copies, *points[i].shape))
                step *= (
                    np.arange(sampler.n_sites)[None, :, None]
                    == rng.integers(sampler.n_sites, size=copies)[:, None, None]
                )
                moved = np.mod(points[i] + step, 1.0)
                frac = sampler.coordinates(moved)
                ok = np.flatnonzero(sampler.apart(frac))
                if ok.size == 0:
                    continue
                built = sampler.structures(frac[ok])
                moved_scores = score(built)
                evaluated += ok.size
                k = int(np.argmin(moved_scores))
                if moved_scores[k] < scores[i]:
                    trials[i], points[i], scores[i] = built[k], moved[ok[k]], moved_scores[k]
    order = _round_robin(np.asarray(step_of), scores)[:n]
    out: list[tuple[Structure, CandidateSpec]] = []
    for i in order:
        sg, combo, perm = plan[step_of[i]]
        extra: dict[str, object] = {
            "wyckoff": ["+".join(sites) for sites in combo],
            "axes": list(perm),
            "prescreen_misfit": round(float(scores[i]), 4),
            "drawn": evaluated,
        }
        out.append((trials[i], CandidateSpec(sg, z, seed, True, source="enumerated", extra=extra)))
    return out


def _lattice_positions(
    structure: Structure, wavelengths: Sequence[float], two_theta_max: float
) -> np.ndarray:
    """Bragg 2θ (degrees) of every lattice reflection (absences included) up to ``two_theta_max`` + 1° at
    every wavelength."""
    from xrdsolve.refine.physics.lattice import d_min_for, generate_hkl

    lattice = torch.tensor(np.array(structure.lattice.matrix), dtype=torch.float64)[None]
    hkl, mask = generate_hkl(lattice, d_min_for(min(two_theta_max + 1.0, 179.0), min(wavelengths)))
    recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
    s = np.linalg.norm(hkl[0][mask[0]].numpy() @ recip, axis=1)  # |h*| = 1/d, Å⁻¹
    s = np.unique(np.round(s, 9))
    out = [np.degrees(2 * np.arcsin(np.clip(s * lam / 2, None, 1.0))) for lam in wavelengths]
    return np.sort(np.concatenate(out))


def _round_robin(step_of: np.ndarray, scores: np.ndarray) -> list[int]:
    """Trial indices: each assignment's best (assignments ordered by it), then each one's second best…"""
    rank_in_step = np.empty(len(scores), dtype=int)
    for j in np.unique(step_of):
        idx = np.flatnonzero(step_of == j)
        rank_in_step[idx[np.argsort(scores[idx], kind="stable")]] = np.arange(idx.size)
    return list(np.lexsort((scores, rank_in_step)))
