"""Powder indexing: dichotomy search per crystal system, least-squares refinement with zero shift,
lattice-centring detection, figures of merit, reduction and deduplication."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dichotomy import BoxLimitExceeded, SearchSpace, dichotomy
from .merit import de_wolff_m, smith_snyder_f
from .observations import NOTIONAL_WAVELENGTH, IndexingError, Peaks, d_inv_d2, inv_d2, two_theta_from_inv_d2
from .refinement import refine_trials
from .solution import CellSolution, centring_allows, metric_system, same_lattice
from .systems import MODELS, SYSTEMS, CrystalSystem, FloatArray, IntArray, SystemModel
from .trials import monoclinic_trials

log = logging.getLogger(__name__)

#: Lattice centrings tried on the primitive cell found in each crystal system.
CENTRINGS: dict[str, tuple[str, ...]] = {
    "cubic": ("F", "I"),
    "tetragonal": ("I",),
    "hexagonal": ("R", "Rrev"),
    "orthorhombic": ("F", "I", "C", "A", "B"),
    "monoclinic": ("C", "A", "I"),
}


_CENTRED_VOLUME = {"cubic": 4.0, "tetragonal": 2.0, "hexagonal": 3.0}

#: Systems searched over the whole volume range at once (one cell parameter: a few boxes per shell), not
#: shell by shell: the search of larger shells stops once a solution reaches ``stop_m20``.
WHOLE_RANGE_SYSTEMS = ("cubic",)


#: The largest zero shift searched by default (degrees 2θ at Cu Kα1, scaled with the wavelength).
DEFAULT_MAX_ZERO_SHIFT = 0.1


#: The 2θ tolerance (degrees) within which a reflection indexes a line by default, at Cu Kα1 (scaled with
#: the wavelength).
DEFAULT_TOLERANCE = 0.03


def default_tolerance(wavelength: float) -> float:
    """The 2θ tolerance (degrees) used by default at ``wavelength`` (Å): DEFAULT_TOLERANCE at Cu Kα1, scaled
    so that it means the same d resolution."""
    return DEFAULT_TOLERANCE * wavelength / NOTIONAL_WAVELENGTH


def default_max_zero_shift(wavelength: float) -> float:
    """The largest zero shift (degrees 2θ) searched by default at ``wavelength`` (Å): DEFAULT_MAX_ZERO_SHIFT
    at Cu Kα1, scaled so that it means the same d resolution."""
    return DEFAULT_MAX_ZERO_SHIFT * wavelength / NOTIONAL_WAVELENGTH


@dataclass(frozen=True)
class IndexingOptions:
    """Search settings. Lengths Å, volumes Å³, angles degrees 2θ, ``time_limit`` seconds.

    ``tolerance`` is the allowed |2θ_obs − zero − 2θ_calc| of an indexed line and ``max_zero_shift`` the
    largest zero shift searched (a box dimension of the dichotomy, refined afterwards); their defaults,
    0.03° and 0.1° at Cu Kα1, scale with the wavelength so that they mean the same d resolution. The zero
    shifts searched are ``zero_centre`` ± ``max_zero_shift``: a larger box admits more wrong cells and slows
    the search more than a second search of a box centred where a first one's best cell put the zero.

    Cells are searched from ``min_volume`` to ``max_volume`` (Å³), with edges from ``a_min`` to ``a_max`` (Å),
    or to ``monoclinic_a_max`` for monoclinic cells (at least the first line's d): with every edge up to 25 Å
    the four-parameter search of a 400 Å³ shell takes 11 s for 20 lines, against 1.5 s up to 12 Å.
    ``shell_volume`` sets the volume shells of the orthorhombic and monoclinic searches (DICVOL uses 400 Å³). The search of lower
    symmetries stops once a solution reaches ``stop_m20`` unless ``exhaustive``; cubic cells are searched
    over the whole volume range at once (:data:`WHOLE_RANGE_SYSTEMS`). With ``monoclinic_trials`` each
    monoclinic shell is given the TREOR-style trial cells of :mod:`.trials` (every edge up to ``a_max``) that
    fall in it, and the monoclinic dichotomy, which outgrows its box limit on many patterns, runs over the
    shells after every shell's cheaper searches, while no solution reaches ``stop_m20``.

    At least ``min_lines`` lines are needed (4, the default, or 3 for a cubic-only search: a cubic cell has
    one parameter, so three lines, two ratios to match, already test it).
    """

    systems: tuple[CrystalSystem, ...] = SYSTEMS
    n_lines: int = 20
    tolerance: float | None = None
    max_zero_shift: float | None = None
    zero_centre: float = 0.0
    min_volume: float = 0.0
    max_volume: float = 2000.0
    a_min: float = 2.0
    a_max: float = 25.0
    monoclinic_a_max: float = 12.0
    max_unindexed: int = 0
    shell_volume: float = 400.0
    max_solutions: int = 10
    time_limit: float = 60.0
    exhaustive: bool = False
    stop_m20: float = 20.0
    min_m20: float = 3.0
    max_candidates: int = 40
    max_trials: int = 2000
    monoclinic_trials: bool = True
    min_lines: int = 4

    @property
    def tol(self) -> float:
        """The 2θ tolerance (degrees) once resolved (Cu Kα1 default when unset)."""
        return DEFAULT_TOLERANCE if self.tolerance is None else self.tolerance

    @property
    def zero_max(self) -> float:
        """The largest zero shift (degrees 2θ) once resolved (Cu Kα1 default when unset)."""
        return DEFAULT_MAX_ZERO_SHIFT if self.max_zero_shift is None else self.max_zero_shift


def index_peaks(
    peaks: Peaks, options: IndexingOptions | None = None, **overrides: object
) -> list[CellSolution]:
    """Index ``peaks``: ranked list of :class:`CellSolution` (best M20 first), at most ``max_solutions``.

    Keyword ``overrides`` replace fields of ``options`` (e.g. ``index_peaks(p, max_volume=800)``).
    Returns an empty list when no cell indexes the lines within tolerance.
    """
    opts = options or IndexingOptions()
    if overrides:
        opts = dataclasses.replace(opts, **overrides)  # type: ignore[arg-type]
    unknown = [s for s in opts.systems if s not in MODELS]
    if unknown:
        raise IndexingError(f"unknown crystal system(s) {unknown}; expected some of {list(SYSTEMS)}")
    lines = peaks.first(opts.n_lines)
    centre = opts.zero_centre if lines.zero_allowed else 0.0
    if centre:
        lines = dataclasses.replace(lines, two_theta=lines.two_theta - centre)
    opts = dataclasses.replace(
        opts,
        tolerance=opts.tolerance if opts.tolerance is not None else default_tolerance(lines.wavelength),
        max_zero_shift=opts.max_zero_shift
        if opts.max_zero_shift is not None
        else default_max_zero_shift(lines.wavelength),
    )
    fewest = 3 if set(opts.systems) == {"cubic"} else 4
    if opts.min_lines < fewest:
        raise IndexingError(f"min_lines must be at least {fewest} for systems {list(opts.systems)}")
    if len(lines) < opts.min_lines:
        raise IndexingError(f"at least {opts.min_lines} peaks are needed to index, got {len(lines)}")
    zero_max = opts.zero_max if lines.zero_allowed else 0.0
    tt, lam = lines.two_theta, lines.wavelength
    q_obs = inv_d2(tt, lam)
    grad = d_inv_d2(tt, lam)
    q_tol = grad * opts.tol
    a_max = max(opts.a_max, 1.05 * float(lines.d[0]))
    deadline = time.monotonic() + opts.time_limit
    found: list[CellSolution] = []
    shells = volume_shells(opts)
    trials: FloatArray | None = None  # the monoclinic trial cells, made at the first monoclinic shell
    # the monoclinic shells whose dichotomy waits for the cheaper searches of every shell
    deferred: list[tuple[float, float]] = []

    def stopped() -> bool:
        return not opts.exhaustive and any(s.m20 >= opts.stop_m20 for s in found)

    def search(name: CrystalSystem, lo: float, hi: float) -> bool:
        """Dichotomy of one system over primitive volumes ``lo``–``hi`` (Å³); False once out of time."""
        model = MODELS[name]
        edge = (
            a_max
            if name != "monoclinic"
            else min(a_max, max(opts.monoclinic_a_max, 1.05 * float(lines.d[0])))
        )
        scale = _CENTRED_VOLUME.get(name, 1.0)
        space = SearchSpace(opts.a_min, edge, lo * scale, hi * scale)
        t0 = time.monotonic()
        try:
            centres, zeros = dichotomy(
                model,
                q_obs,
                q_tol,
                space,
                max_unindexed=opts.max_unindexed,
                deadline=deadline,
                grad=grad,
                zero_max=zero_max,
                zero_width=opts.tol,
            )
        except BoxLimitExceeded as exc:
            log.warning("indexing: %s; shell %.0f–%.0f Å³ skipped", exc, lo, hi)
            return True
        except TimeoutError:
            log.warning("indexing: time limit reached during the %s search", name)
            return False
        sols = _solutions(model, centres, zeros, lines, opts)
        log.info(
            "indexing %s V %.0f–%.0f Å³: %d boxes -> %d cells in %.2f s",
            name,
            space.v_min,
            space.v_max,
            len(centres),
            len(sols),
            time.monotonic() - t0,
        )
        found.extend(sols)
        return True

    for v_lo, v_hi in shells:
        for name in opts.systems:
            lo, hi = v_lo, v_hi
            if name in WHOLE_RANGE_SYSTEMS:
                # one cheap search over every volume, in the first shell: a larger cubic cell indexes the
                # lines with fewer parameters than a smaller lower-symmetry one the shells would stop at
                if (v_lo, v_hi) != shells[0]:
                    continue
                lo, hi = shells[0][0], shells[-1][1]
            if name in ("orthorhombic", "monoclinic") and stopped():
                break
            if name == "monoclinic" and opts.monoclinic_trials:
                if trials is None:
                    trials = monoclinic_trials(
                        q_obs,
                        q_tol,
                        v_min=shells[0][0],
                        v_max=shells[-1][1],
                        a_max=a_max,
                        max_missed=max(1, opts.max_unindexed),
                        max_trials=opts.max_trials,
                        deadline=deadline,
                    )
                found.extend(_trial_solutions(trials, lo, hi, lines, opts))
                deferred.append((lo, hi))
                continue
            if not search(name, lo, hi):
                break
        if time.monotonic() > deadline or stopped():
            break
    # the monoclinic dichotomy, which can outgrow its box limit shell after shell, once the cheaper searches
    # of every shell are done
    for lo, hi in deferred:
        if stopped() or time.monotonic() > deadline or not search("monoclinic", lo, hi):
            break
    ranked = rank_solutions(found, opts.max_solutions, precision=opts.tol / 3.0)
    if centre:
        # back to the peaks as measured: 2θ_obs − zero − 2θ_calc (the residuals) and the merits are unchanged
        ranked = [
            dataclasses.replace(s, zero_shift=s.zero_shift + centre, two_theta=s.two_theta + centre)
            for s in ranked
        ]
    return ranked


def volume_shells(opts: IndexingOptions) -> list[tuple[float, float]]:
    """Volume shells (Å³) of the primitive search cell from ``min_volume`` to ``max_volume``, searched in
    increasing order."""
    lo, hi = opts.min_volume, opts.max_volume
    if hi <= lo:
        raise IndexingError(f"max_volume {hi} Å³ must exceed min_volume {lo} Å³")
    if opts.shell_volume <= 0 or opts.shell_volume >= hi - lo:
        return [(lo, hi)]
    edges = [*np.arange(lo, hi, opts.shell_volume).tolist(), hi]
    return [(float(a), float(b)) for a, b in itertools.pairwise(edges) if b > a]


def _trial_solutions(
    trials: FloatArray, lo: float, hi: float, lines: Peaks, opts: IndexingOptions
) -> list[CellSolution]:
    """The cells of the monoclinic ``trials`` (:func:`.trials.monoclinic_trials`) with volume ``lo``–``hi``
    (Å³), refined against every line; lattices of higher metric symmetry are left to their own system's
    search: a trial can describe one in a shell smaller than that of its centred conventional cell
    (Eu(BIr)2: its F orthorhombic 609 Å³ cell as an A monoclinic 305 Å³ one) and stop the search before it."""
    t0 = time.monotonic()
    model = MODELS["monoclinic"]
    vol = model.volume(trials)
    in_shell = trials[(vol >= lo) & (vol < hi)]
    sols = [
        s
        for s in _solutions(model, in_shell, np.zeros(len(in_shell)), lines, opts)
        if metric_system(s.reduced_lattice()) in ("monoclinic", "triclinic")
    ]
    log.info(
        "indexing monoclinic trials V %.0f–%.0f Å³: %d trials -> %d cells in %.2f s",
        lo,
        hi,
        len(in_shell),
        len(sols),
        time.monotonic() - t0,
    )
    return sols


def _solutions(
    model: SystemModel, centres: FloatArray, zeros: FloatArray, lines: Peaks, opts: IndexingOptions
) -> list[CellSolution]:
    """Refine box centres, keep the cells that index the lines, detect centring, compute merit."""
    if len(centres) == 0:
        return []
    tt, lam = lines.two_theta, lines.wavelength
    refine_zero = lines.zero_allowed and opts.zero_max > 0
    q_hi = float(inv_d2(np.array([min(tt[-1] + opts.tol + opts.zero_max, 179.0)]), lam)[0])
    if len(centres) > opts.max_trials:  # underdetermined at this tolerance: smallest cells first
        keep = np.argsort(model.volume(centres))[: opts.max_trials]
        centres, zeros = centres[keep], zeros[keep]
    lo = centres.min(axis=0) * 0.95
    hkl = model.hkl_candidates(lo, q_hi * 1.02)
    ref = refine_trials(model, centres, tt, lam, hkl, refine_zero=refine_zero, tolerance=opts.tol, zero=zeros)
    ok = (np.abs(ref.residual) > opts.tol).sum(axis=1) <= opts.max_unindexed
    ok &= np.abs(ref.zero) <= opts.zero_max + opts.tol
    ok &= np.all(ref.params[:, : min(3, model.n_params)] > 0, axis=1)
    if not ok.any():
        return []
    params, zero = ref.params[ok], ref.zero[ok]
    # deduplicate refined trials (they collapse onto the same least-squares minimum)
    npos = min(3, model.n_params)
    key = np.concatenate(
        [np.log(params[:, :npos]), params[:, npos:] / params[:, :1], zero[:, None] / 10.0], axis=1
    )
    key = np.round(key, 4)
    _, first = np.unique(key, axis=0, return_index=True)
    params, zero = params[first], zero[first]
    # cheap primitive M20 to keep the most promising trials
    q_corr = inv_d2(tt[None, :] - zero[:, None], lam)
    qn = q_corr[:, -1] if len(tt) < 20 else q_corr[:, 19]
    calc = params @ model.design(hkl).T
    big = 1e6 * float(qn.max())
    qc_sorted = np.sort(np.where(calc <= qn[:, None] * (1 + 1e-7), calc, big), axis=1)
    inside = qc_sorted < big
    distinct = inside[:, 0].astype(int) + (
        inside[:, 1:] & (np.diff(qc_sorted, axis=1) > 1e-7 * qn[:, None])
    ).sum(axis=1)
    score = 1.0 / np.maximum(distinct, 1)
    order = np.argsort(-score)[: opts.max_candidates]
    out = []
    for i in order:
        sol = _best_centring(model, params[i], float(zero[i]), lines, hkl, opts, refine_zero)
        if sol is not None and sol.m20 >= opts.min_m20:
            out.append(sol)
    return out


def _best_centring(
    model: SystemModel,
    params: FloatArray,
    zero: float,
    lines: Peaks,
    hkl: IntArray,
    opts: IndexingOptions,
    refine_zero: bool,
) -> CellSolution | None:
    best: CellSolution | None = None
    if model.name == "hexagonal":  # the R conditions need every (h, k), not only h ≥ k ≥ 0
        hk = hkl[:, :2]
        n = int(np.abs(hk).max())
        r = np.arange(-n, n + 1)
        grid = np.stack(np.meshgrid(r, r, np.unique(hkl[:, 2]), indexing="ij"), axis=-1).reshape(-1, 3)
        q_lim = float((model.design(hkl) @ params).max())
        hkl = grid[(model.design(grid) @ params <= q_lim) & np.any(grid != 0, axis=1)]
    for centring in ("P", *CENTRINGS[model.name]):
        allowed = hkl[centring_allows(centring, hkl)]
        ref = refine_trials(
            model,
            params[None, :],
            lines.two_theta,
            lines.wavelength,
            allowed,
            refine_zero=refine_zero,
            tolerance=opts.tol,
            zero=np.array([zero]),
        )
        resid = ref.residual[0]
        if (np.abs(resid) > opts.tol).sum() > opts.max_unindexed:
            continue
        sol = _make_solution(
            model, centring, ref.params[0], float(ref.zero[0]), ref.hkl[0], resid, lines, allowed, opts
        )
        if sol is not None and (best is None or _better_centring(sol, best)):
            best = sol
    return best


def _better_centring(sol: CellSolution, best: CellSolution) -> bool:
    """Whether centring ``sol`` beats ``best`` (the same cell, another centring): it indexes more lines, or as
    many with an M20 5 % higher. A centring that leaves a line unindexed which the primitive cell indexes is
    not chosen for predicting fewer lines (HoGeRh, Pnma: its weak P-only lines are real)."""
    if sol.n_unindexed != best.n_unindexed:
        return sol.n_unindexed < best.n_unindexed
    return sol.m20 > best.m20 * 1.05


def _make_solution(
    model: SystemModel,
    centring: str,
    params: FloatArray,
    zero: float,
    hkl_lines: IntArray,
    resid: FloatArray,
    lines: Peaks,
    allowed: IntArray,
    opts: IndexingOptions,
) -> CellSolution | None:
    if np.any(params[: min(3, model.n_params)] <= 0):
        return None
    tt, lam = lines.two_theta, lines.wavelength
    indexed = np.abs(resid) <= opts.tol
    tt_corr = tt - zero
    q_obs = inv_d2(tt_corr, lam)
    x_lines = model.design(hkl_lines)
    q_lines = x_lines @ params
    q_all = model.design(allowed) @ params
    # unindexed lines count with the tolerance as their error
    q_lines = np.where(indexed, q_lines, q_obs - d_inv_d2(tt_corr, lam) * opts.tol)
    m20 = de_wolff_m(q_obs, q_lines, q_all, n=20)
    tt_lines = np.where(indexed, two_theta_from_inv_d2(q_lines, lam), tt_corr - opts.tol)
    f_n, f_lines, f_delta, f_poss = smith_snyder_f(tt_corr, tt_lines, two_theta_from_inv_d2(q_all, lam), n=30)
    try:
        a, b, c, al, be, ga = model.cell(params)
    except ValueError:
        return None
    vol = float(model.volume(params[None, :])[0])
    return CellSolution(
        crystal_system=model.name,
        centring=centring,
        a=a,
        b=b,
        c=c,
        alpha=al,
        beta=be,
        gamma=ga,
        volume=vol,
        zero_shift=zero,
        m20=float(m20),
        m_lines=min(20, len(tt)),
        f_n=float(f_n),
        f_lines=f_lines,
        f_delta=f_delta,
        f_possible=f_poss,
        n_indexed=int(indexed.sum()),
        n_unindexed=int((~indexed).sum()),
        hkl=hkl_lines,
        indexed=indexed,
        residual=resid,
        two_theta=tt,
        wavelength=lam,
    )


def ranking_merit(solution: CellSolution, precision: float) -> float:
    """M20 with the mean line misfit floored at ``precision`` (degrees 2θ): the merit used for ranking.

    Misfits far below the precision of measured peak positions only say that a cell with more free parameters
    fits the errors better (a tetragonal sub-cell can index the six lines of an fcc pattern with a smaller misfit
    than the true cubic cell, and a higher M20). With the floor, cells that fit within the precision are ranked
    by how few lines they predict that are not observed, as M20 intends.
    """
    if not solution.f_delta > 0.0:
        return solution.m20
    return solution.m20 * min(1.0, solution.f_delta / precision)


def rank_solutions(
    found: Sequence[CellSolution], max_solutions: int, precision: float = 0.01
) -> list[CellSolution]:
    """Deduplicate by reduced primitive lattice (keeping the highest symmetry, found first) and sort by
    :func:`ranking_merit`; a centred cell goes after the same conventional cell with another centring that
    leaves fewer of the same lines unindexed."""
    sym_rank: dict[str, int] = {name: i for i, name in enumerate(SYSTEMS)}
    by_sym = sorted(found, key=lambda s: (sym_rank[s.crystal_system], -s.m20))
    kept: list[tuple[CellSolution, object]] = []
    for sol in by_sym:
        red = sol.reduced_lattice()
        if any(same_lattice(red, other) for _, other in kept):  # type: ignore[arg-type]
            continue
        kept.append((sol, red))
    cells = [s for s, _ in kept]
    merit = [ranking_merit(s, precision) for s in cells]
    # a centring ranks after the same conventional cell that indexes more of the same lines (HoGeRh, Pnma:
    # its I cell from one search predicts fewer lines, so a higher M20, but misses the weak P-only lines)
    for i, sol in enumerate(cells):
        for j, other in enumerate(cells):
            if _indexes_more_of_the_same_lines(other, sol):
                merit[i] = min(merit[i], merit[j] * (1.0 - 1e-9))
    order = sorted(range(len(cells)), key=lambda i: -merit[i])
    return [cells[i] for i in order[:max_solutions]]


def _indexes_more_of_the_same_lines(sol: CellSolution, other: CellSolution) -> bool:
    """Whether ``sol`` is ``other``'s conventional cell with another centring, judged on the same lines, and
    leaves fewer of them unindexed."""
    return (
        sol.centring != other.centring
        and sol.n_unindexed < other.n_unindexed
        and sol.two_theta.shape == other.two_theta.shape
        and bool(np.allclose(sol.two_theta, other.two_theta))
        and same_lattice(sol.lattice(), other.lattice())
    )
