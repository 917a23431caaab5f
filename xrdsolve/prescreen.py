"""Prescreening in an indexed cell: many Wyckoff trials, ranked and improved by their peak-group intensities.

A direct-space search needs many trial structures but a full-profile fit of each is too dear. In an
indexed cell the reflection positions are known, so the pattern is cut into *peak groups* — stretches of
2θ that hold reflections, separated by stretches of background — and each group's integrated intensity
is measured once (background interpolated from the stretches between groups). A trial structure is then
judged by the weighted misfit of its calculated group intensities (|F|², multiplicity, LP, Kα1 + Kα2),
with the best scale and an overall B_iso: batched structure factors of thousands of trials
(:mod:`xrdsolve.trial_scorer`), no profile and no refinement. The misfit is differentiable in the free
coordinates, so the best random draws are moved downhill (a local descent from many starts). The best
trials go on to the screening fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition, Structure

from xrdsolve.composition import anion_radii
from xrdsolve.conditioning.peaks import find_peaks
from xrdsolve.random_candidates import CandidateSpec, WyckoffSampler, permuted_cell, wyckoff_plan

#: Half-width of the window kept around each reflection, in FWHM.
GROUP_HALF_WIDTH_FWHM = 2.5
#: Width (degrees 2θ of background points) of the running median and mean that smooth the background.
BACKGROUND_WINDOW_DEG = 1.0
#: Groups wider than this (degrees 2θ) are left out of the misfit: where broad peaks overlap over tens of
#: degrees, no background point lies under the group, its background is extrapolated and its intensity is
#: mostly background error. Measured on the 100 benchmark patterns (true structure, screening-refined cell):
#: the true structure's median misfit falls from 0.17 to 0.07 (34 → 9 patterns above 0.3), and its misfit
#: against the same structure with atoms moved by 0.06 (fractional, rms) rises from 3.8 to 9.5 times.
MAX_GROUP_WIDTH_DEG = 3.0
#: Lorentzian share of the pseudo-Voigt assumed when sharing a reflection's intensity between groups.
PROFILE_ETA = 0.5
#: Groups on either side of its own that a reflection's profile tails may reach.
NEIGHBOUR_GROUPS = 2
#: Relative uncertainty added to every observed group intensity (profile, absorption and texture effects
#: the misfit does not model), so the strongest groups do not decide alone.
RELATIVE_ERROR_FLOOR = 0.05
#: Overall B_iso values (Å²) tried for every trial; the lowest misfit counts.
OVERALL_B = (0.0, 0.8, 2.0)
#: Random draws per Wyckoff assignment with free coordinates (one for an assignment without).
DRAWS_PER_ASSIGNMENT = 24
#: Draws per cell and Z at most (each costs a few µs to score; the time limit usually decides).
MAX_DRAWS_PER_PLAN = 20000
#: Share of the time allowed that the random draws may take; local descents have the rest.
DRAW_SHARE = 0.35
#: Assignments (with free coordinates, best draws first) whose best draws are moved downhill.
DESCENT_ASSIGNMENTS = 96
#: Assignments whose descents run together (a time limit is checked between such batches).
DESCENT_BATCH = 16
#: Best draws of each such assignment moved downhill on the misfit (local descents from many starts).
MINIMISE_STARTS = 8
#: Share of the time allowed that the draws and the local descents may take together; deep searches of the
#: best assignments have the rest.
DESCENT_SHARE = 0.6
#: Assignments (with free coordinates, lowest misfit first after the descents) searched deeply: rounds of
#: DEEP_STARTS random starts, each descended DEEP_PROBE_STEPS steps, the best DEEP_KEEP share of them then
#: to the end (:data:`~xrdsolve.trial_scorer.MINIMISE_STEPS`), until the time allowed is up or after
#: DEEP_MAX_ROUNDS rounds (one round without a time limit). Measured on Ho2Ge2Os (benchmark pattern 75, C2/m with five 4i sites, 10 free
#: coordinates, in its indexed cell): the 8 descents of the ordinary step miss the true minimum; 512 full
#: descents from random starts find it 2nd lowest (4.7 s), 1,024 starts probed 15 steps with the best 256
#: descended on find it lowest (3.9 s).
DEEP_ASSIGNMENTS = 2
DEEP_STARTS = 256
DEEP_PROBE_STEPS = 15
DEEP_KEEP = 0.25
#: Learning-rate range of the probe descents (general-point coordinates).
DEEP_PROBE_LR = (0.02, 0.01)
#: Distinct minima of a deeply searched assignment offered in the first round of candidates
#: (:func:`_round_robin`): its lowest is not always the true one (Ho2Ge2Os: 2nd of 512 full descents).
DEEP_DISTINCT = 3
#: Deep rounds per assignment at most (without it a solve with no time budget spends all of its 30 s of
#: prescreening there: the demo took 53 s instead of 29 s).
DEEP_MAX_ROUNDS = 4
#: Relative score difference below which two trials of one assignment count as one minimum.
DISTINCT_MISFIT = 1e-3
#: Assignments considered per cell and Z (groups in hint order, each's assignments simplest first).
MAX_ASSIGNMENTS = 400


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
    index_parts, fraction_parts, row_parts = [], [], []
    for ok, jj, frac in group_shares(tt, groups):
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


def group_shares(
    two_theta: np.ndarray, groups: PeakGroups
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each reflection's profile share in its own group and the :data:`NEIGHBOUR_GROUPS` on either side
    (tails, Kα2): for reflections at observed 2θ ``two_theta`` (any shape, degrees), one (in range, group
    index, fraction) triple of arrays of that shape per neighbour offset, with the groups' FWHM model and
    :data:`PROFILE_ETA`."""
    g = len(groups)
    width = groups.fwhm[0] + groups.fwhm[1] * np.tan(np.radians(two_theta / 2))
    own = np.searchsorted(groups.lower, two_theta, side="right") - 1
    out = []
    for k in range(-NEIGHBOUR_GROUPS, NEIGHBOUR_GROUPS + 1):
        j = own + k
        jj = np.clip(j, 0, g - 1)
        frac = _pseudo_voigt_cdf(groups.upper[jj] - two_theta, width) - _pseudo_voigt_cdf(
            groups.lower[jj] - two_theta, width
        )
        out.append(((j >= 0) & (j < g), jj, frac))
    return out


def _pseudo_voigt_cdf(x: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Fraction of a pseudo-Voigt (FWHM ``fwhm``, Lorentzian share :data:`PROFILE_ETA`) below offset x
    (degrees 2θ) from its centre."""
    from scipy.special import erf

    lorentz = 0.5 + np.arctan(2.0 * x / fwhm) / np.pi
    gauss = 0.5 * (1.0 + erf(x * 2.0 * np.sqrt(np.log(2.0)) / fwhm))
    return PROFILE_ETA * lorentz + (1.0 - PROFILE_ETA) * gauss


def misfit_weights(groups: PeakGroups) -> np.ndarray:
    """(G,) weight of each group in :func:`misfit`: 1 / (variance + (RELATIVE_ERROR_FLOOR · I_obs)²), and 0 for
    groups wider than :data:`MAX_GROUP_WIDTH_DEG` (unless every group is)."""
    weights = 1.0 / (groups.variance + (RELATIVE_ERROR_FLOOR * np.abs(groups.observed)) ** 2 + 1e-300)
    wide = groups.upper - groups.lower > MAX_GROUP_WIDTH_DEG
    return weights if wide.all() else np.where(wide, 0.0, weights)


def misfit(calculated: np.ndarray, groups: PeakGroups) -> np.ndarray:
    """Weighted misfit Σw(I_obs − s·I_calc)² / Σw·I_obs² with the best scale s ≥ 0, per structure;
    ``calculated`` (..., N, G) → (..., N). 0 is a perfect match, 1 no better than zero intensity."""
    obs = groups.observed
    w = misfit_weights(groups)
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
    centring: str = "P",
) -> list[tuple[Structure, CandidateSpec]]:
    """The ``n`` best of many Wyckoff trials of ``composition`` × ``z`` in an indexed cell.

    ``lattice`` a, b, c (Å), α, β, γ (degrees) and ``zero_shift`` (degrees 2θ) from indexing. Trials are
    judged by :func:`misfit` plus the overlap penalty of :class:`~xrdsolve.trial_scorer.TrialScorer`, in
    two steps: :data:`DRAWS_PER_ASSIGNMENT` random draws of each of the first :data:`MAX_ASSIGNMENTS`
    assignments of :func:`~xrdsolve.random_candidates.wyckoff_plan` (``max_draws`` in all at most); then,
    assignments with free coordinates taken best first, local descents from their
    :data:`MINIMISE_STARTS` best draws (:meth:`~xrdsolve.trial_scorer.TrialScorer.minimise`), for up to
    :data:`DESCENT_ASSIGNMENTS` assignments; then deep searches of the :data:`DEEP_ASSIGNMENTS` best
    (:func:`_deep_round`). Only trials whose atoms keep apart
    (:meth:`~xrdsolve.random_candidates.WyckoffSampler.apart`; full-charge anions of ``composition``, from
    :func:`~xrdsolve.composition.anion_radii`, by their ionic radii) become candidates: the best distinct one of
    each assignment first (the :data:`DEEP_DISTINCT` best of a deeply searched one; best assignments first),
    then the next best of each, and so on — so that
    ``n`` candidates cover ``n`` assignments when there are that many. Each spec records
    ``prescreen_misfit`` and ``drawn`` (how many trials were scored). With ``stop_at`` (a
    ``time.perf_counter()`` value) the draws stop at :data:`DRAW_SHARE` of the time left, the descents at
    :data:`DESCENT_SHARE` and the deep searches at ``stop_at`` or after :data:`DEEP_MAX_ROUNDS` rounds (the
    first assignment is always drawn; one deep round without ``stop_at``).
    """
    from xrdsolve.trial_scorer import TrialScorer, reflections_for

    started = time.perf_counter()
    species, plan = wyckoff_plan(
        composition, z, spacegroups, lattice, limit=MAX_ASSIGNMENTS, centring=centring
    )
    plan = plan[:MAX_ASSIGNMENTS]
    if not plan or n <= 0:
        return []
    rng = np.random.default_rng(seed)
    anions = anion_radii(composition)
    samplers = [
        WyckoffSampler(sg, species, combo, permuted_cell(lattice, perm), anions) for sg, combo, perm in plan
    ]
    lam = instrument.radiation.wavelengths
    positions = _lattice_positions(samplers[0].lattice, lam, float(pattern.two_theta[-1])) + zero_shift
    groups = peak_groups(pattern, positions, fwhm or fwhm_model(pattern))
    if len(groups) == 0:
        return []
    # one scorer per space group and axis order: its assignments share reflections and are scored together
    keys: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for j, (sg, _, perm) in enumerate(plan):
        keys.setdefault((sg, tuple(perm)), []).append(j)
    scorers: dict[tuple[int, tuple[int, ...]], TrialScorer] = {}
    slot: dict[int, tuple[tuple[int, tuple[int, ...]], int]] = {}  # assignment → (key, index in its scorer)
    for key, members in keys.items():
        reflections = reflections_for(samplers[members[0]], groups, instrument, zero_shift)
        scorers[key] = TrialScorer([samplers[j] for j in members], groups, reflections)
        slot.update({j: (key, k) for k, j in enumerate(members)})

    draws_until = None if stop_at is None else started + DRAW_SHARE * max(0.0, stop_at - started)
    points: dict[int, np.ndarray] = {}
    scores: dict[int, np.ndarray] = {}
    drawn = 0
    for j, sampler in enumerate(samplers):
        if points and (drawn >= max_draws or (draws_until is not None and time.perf_counter() > draws_until)):
            break
        key, k = slot[j]
        count = DRAWS_PER_ASSIGNMENT if sampler.has_free_coordinates else 1
        points[j] = rng.random((count, scorers[key].n_sites, 3))
        scores[j] = scorers[key].score(points[j], np.full(count, k), penalised=True)
        drawn += count
    free = sorted(
        (j for j in points if samplers[j].has_free_coordinates), key=lambda j: float(scores[j].min())
    )[:DESCENT_ASSIGNMENTS]
    descents_until = None if stop_at is None else started + DESCENT_SHARE * max(0.0, stop_at - started)
    # local descents from the best draws of the best assignments, a few assignments per batch
    for start in range(0, len(free), DESCENT_BATCH):
        if descents_until is not None and time.perf_counter() > descents_until:
            break
        batch = free[start : start + DESCENT_BATCH]
        rows = {j: np.argsort(scores[j], kind="stable")[:MINIMISE_STARTS] for j in batch}
        drawn += _descend(scorers, slot, points, scores, rows)
    deep = sorted(free, key=lambda j: float(scores[j].min()))[:DEEP_ASSIGNMENTS]
    rounds = 0
    while (
        deep
        and rounds < DEEP_MAX_ROUNDS
        and (rounds == 0 if stop_at is None else time.perf_counter() < stop_at)
    ):
        for j in deep:
            if rounds and stop_at is not None and time.perf_counter() > stop_at:
                break
            key, k = slot[j]
            found, found_scores = _deep_round(scorers[key], k, rng)
            points[j] = np.concatenate([points[j], found])
            scores[j] = np.concatenate([scores[j], found_scores])
            drawn += DEEP_STARTS
        rounds += 1
    out: list[tuple[Structure, CandidateSpec]] = []
    depth = dict.fromkeys(deep, DEEP_DISTINCT)
    for j, i, frac in _round_robin(points, scores, samplers, n, depth):
        sg, combo, perm = plan[j]
        extra: dict[str, object] = {
            "wyckoff": ["+".join(sites) for sites in combo],
            "axes": list(perm),
            "prescreen_misfit": round(float(scores[j][i]), 4),
            "drawn": drawn,
        }
        structure = samplers[j].structures(frac)[0]
        out.append((structure, CandidateSpec(sg, z, seed, True, source="enumerated", extra=extra)))
    return out


def _deep_round(scorer: Any, which: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One round of the deep search of assignment ``which`` of ``scorer`` (:data:`DEEP_ASSIGNMENTS`):
    general points and penalised misfits of its :data:`DEEP_KEEP` best probed starts, descended to the end."""
    starts = rng.random((DEEP_STARTS, scorer.n_sites, 3))
    index = np.full(DEEP_STARTS, which)
    probed, probe_scores = scorer.minimise(starts, index, steps=DEEP_PROBE_STEPS, lr=DEEP_PROBE_LR)
    best = np.argsort(probe_scores, kind="stable")[: max(1, round(DEEP_KEEP * DEEP_STARTS))]
    return scorer.minimise(probed[best], index[best])


def _descend(
    scorers: dict[tuple[int, tuple[int, ...]], Any],
    slot: dict[int, tuple[tuple[int, tuple[int, ...]], int]],
    points: dict[int, np.ndarray],
    scores: dict[int, np.ndarray],
    rows: dict[int, np.ndarray],
) -> int:
    """Local descents (:meth:`~xrdsolve.trial_scorer.TrialScorer.minimise`) of the trials ``rows[j]`` of each
    assignment j, batched per scorer; a trial is replaced (in ``points`` and ``scores``) where its descent
    ends lower. Returns the number of descents."""
    run = 0
    for key in {slot[j][0] for j in rows}:
        batch = [j for j in rows if slot[j][0] == key]
        trial_points = np.concatenate([points[j][rows[j]] for j in batch])
        which = np.concatenate([np.full(len(rows[j]), slot[j][1]) for j in batch])
        moved, moved_scores = scorers[key].minimise(trial_points, which)
        offset = 0
        for j in batch:
            sel = rows[j]
            m, ms = moved[offset : offset + len(sel)], moved_scores[offset : offset + len(sel)]
            offset += len(sel)
            better = ms < scores[j][sel]
            points[j][sel[better]] = m[better]
            scores[j][sel[better]] = ms[better]
        run += len(which)
    return run


def _lattice_positions(lattice: Any, wavelengths: Sequence[float], two_theta_max: float) -> np.ndarray:
    """Bragg 2θ (degrees) of every reflection (absences included) of the cell ``lattice`` (pymatgen
    Lattice) up to ``two_theta_max`` + 1° at every wavelength."""
    from xrdsolve.refine.physics.lattice import d_min_for, generate_hkl

    matrix = torch.tensor(np.array(lattice.matrix), dtype=torch.float64)[None]
    hkl, mask = generate_hkl(matrix, d_min_for(min(two_theta_max + 1.0, 179.0), min(wavelengths)))
    recip = lattice.reciprocal_lattice_crystallographic.matrix
    s = np.linalg.norm(hkl[0][mask[0]].numpy() @ recip, axis=1)  # |h*| = 1/d, Å⁻¹
    s = np.unique(np.round(s, 9))
    out = [np.degrees(2 * np.arcsin(np.clip(s * lam / 2, None, 1.0))) for lam in wavelengths]
    return np.sort(np.concatenate(out))


def _round_robin(
    points: dict[int, np.ndarray],
    scores: dict[int, np.ndarray],
    samplers: Sequence[WyckoffSampler],
    n: int,
    depth: dict[int, int] | None = None,
) -> list[tuple[int, int, np.ndarray]]:
    """Up to ``n`` (assignment, trial, fractional coordinates (1, atoms, 3)) whose atoms keep apart: each
    assignment's best distinct trial (assignments ordered by it; its ``depth[j]`` best for an assignment j
    in ``depth``), then each one's next best… Trials of one assignment whose scores agree to
    :data:`DISTINCT_MISFIT` (relative) count as one (local descents from many draws end in one minimum).
    Atoms are checked in that order, only until ``n`` are found."""
    depth = depth or {}
    ranked: list[tuple[int, float, int, int]] = []
    for j, sc in scores.items():
        kept: list[float] = []
        for i in np.argsort(sc, kind="stable"):
            value = float(sc[i])
            if any(abs(value - k) <= DISTINCT_MISFIT * max(abs(k), 1e-12) for k in kept):
                continue
            ranked.append((max(0, len(kept) + 1 - depth.get(j, 1)), value, j, int(i)))
            kept.append(value)
            if len(kept) >= n:
                break
    ranked.sort(key=lambda r: (r[0], r[1]))
    out: list[tuple[int, int, np.ndarray]] = []
    for _, _, j, i in ranked:
        frac = samplers[j].coordinates(points[j][i : i + 1, : samplers[j].n_sites])
        if samplers[j].apart(frac)[0]:
            out.append((j, i, frac))
            if len(out) == n:
                break
    return out
