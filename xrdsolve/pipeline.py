"""End-to-end solve: pattern in, ranked refined structures out.

Stages (each recorded in ``Solution.tried``):

1. read the pattern and pick peaks (Kα2 partners removed);
2. index the peak list (refine.indexing) and derive formula units Z from the cell volume;
3. propose candidates: the generator (when shipped weights are present) and symmetry-aware random
   structures (pyxtal) in the indexed cells and their compatible space groups — or, when indexing
   fails, in cells pyxtal draws from the composition's volume;
4. screen every candidate with a quick batched profile fit (scale, background, cell, zero, widths);
5. refine the best K together (full staged Rietveld), deduplicate with StructureMatcher and rank
   by Rwp with a penalty for extra free parameters.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure

from .composition import parse_composition, parse_elements, propose_compositions, z_candidates
from .errors import UsageError, XrdsolveError
from .plausibility import implausibility
from .random_candidates import (
    CandidateSpec,
    enumerated_symmetric_structures,
    fits_spacegroup,
    random_symmetric_structures,
)
from .solution import Candidate, Solution

log = logging.getLogger(__name__)

#: Stages of the quick screening fit (no atomic parameters).
SCREEN_STAGES = (
    ("scale+background", ("scale", "background"), 10),
    ("+lattice+zero", ("lattice", "zero"), 12),
)
#: Share of the time left after proposing candidates that screening may use under a time budget.
SCREEN_SHARE = 0.4
#: Share of the time budget kept for the disordered models of a non-stoichiometric or mixed composition (the
#: stages before them work within the rest). La0.5Ba0.5CoO3's took 26 s of a 60 s budget without a limit.
DISORDER_SHARE = 0.3
#: Shortest d-spacing (Å) the screening fits use (the full Rietveld uses the whole pattern). Direct-space
#: solution programs work to about this resolution; a lab Cu pattern to 90° (d 1.09 Å) is untouched, while a
#: 0.41 Å synchrotron pattern to 50° 2θ (d 0.48 Å) keeps a ninth of its reflections and half its points.
SCREEN_D_MIN = 1.0
#: Fewest pattern points a screening range cut at SCREEN_D_MIN may keep (else the whole pattern is used).
SCREEN_MIN_POINTS = 500
#: Under a time budget the full Rietveld is skipped (candidates ranked by their screening fits) when the time
#: left is below this many times the screening seconds per candidate: one full refinement costs 10–30 times
#: a screening fit (63 atoms in a 3,100 Å³ cell: 26 s against 1 s), and the first batch always runs.
FINAL_RIETVELD_MIN_SCREENS = 10.0
#: Share of the time budget left that generator sampling may use (the first target is always sampled,
#: in batches of GENERATOR_BIG_CELL_BATCH when its cell holds more than GENERATOR_SMALL_CELL_ATOMS atoms: the
#: first batch always).
GENERATOR_SHARE = 0.12
GENERATOR_SMALL_CELL_ATOMS = 24
GENERATOR_BIG_CELL_BATCH = 4
#: Sampling stops when this many generator samples are drawn and none is physically plausible
#: (:func:`xrdsolve.plausibility.implausibility`): they would all be left out before screening.
GENERATOR_PROBE_SAMPLES = 8
#: Screening order of candidate sources (lower first).
SOURCE_PRIORITY = {
    "enumerated+indexing": 0,
    "random+indexing": 1,
    "generator": 2,
    "random": 3,
    "enumerated": 3,
}
#: Ranking (:func:`_ranked`): each doubling of the formula units in a candidate's primitive cell (over the
#: fewest among the candidates) inflates its score by SUPERCELL_PENALTY_AT_NOISE when the best fit reaches
#: the counting noise (GoF 1), plus SUPERCELL_PENALTY_PER_GOF per unit of GoF above 1, at most
#: SUPERCELL_PENALTY; PRIMITIVE_TOLERANCE (Å) is the translation tolerance of the primitive-cell search.
SUPERCELL_PENALTY_AT_NOISE = 0.0025
SUPERCELL_PENALTY_PER_GOF = 0.02
SUPERCELL_PENALTY = 0.02
PRIMITIVE_TOLERANCE = 0.25
#: Share of the time budget left (when proposing) that prescreening may use: 0.18 (0.1 before) and the
#: generator 0.12 (0.2 before) since prescreening ends in deep searches of its best assignments
#: (:data:`xrdsolve.prescreen.DEEP_ASSIGNMENTS`); in one run of the 100 benchmark patterns this solved
#: Ho2Ge2Os (rank 1) and lost DyMnFe (0.64 / 0.71 against 0.65 / 0.71).
PRESCREEN_SHARE = 0.18
#: Prescreening time (s) of a solve without a time budget (its descents would otherwise go through every
#: assignment of every cell and Z: 16 s for rutile's five cells and Z).
PRESCREEN_SECONDS_WITHOUT_BUDGET = 30.0
#: Smallest M20 of an indexing solution the pipeline trusts.
MIN_M20 = 8.0
#: 2θ tolerance of the cubic search of a three-line pattern, as a fraction of the lines' median FWHM
#: (:func:`_index_three_lines`; used when above the indexer's default).
THREE_LINE_TOLERANCE_FWHM = 0.3
#: Below this M20 of the best cell, indexing is repeated allowing a few unindexed (impurity) lines
#: (spurious low-symmetry cells reach M20 of 20–40 on a dozen lines).
IMPURITY_RETRY_M20 = 100.0
#: Lines needed for that retry (fewer when the best cell cannot hold one formula unit of the composition).
IMPURITY_RETRY_LINES = 8
#: Shares of the impurity retry's time (:func:`_index_with_unindexed`): the high-symmetry search leaving a
#: few lines unindexed, then orthorhombic cells up to RETRY_ORTHORHOMBIC_VOLUME (Å³) leaving one; when that
#: finds none, leaving two when there are 2 × RETRY_TWO_UNINDEXED_LINES_PER lines at least.
RETRY_HIGH_SYMMETRY_SHARE = 0.25
RETRY_ORTHORHOMBIC_SHARE = 0.6
RETRY_ORTHORHOMBIC_VOLUME = 800.0
RETRY_TWO_UNINDEXED_LINES_PER = 7
IMPURITY_RETRY_LINES_TOO_SMALL = 6
#: A sub-cell of an indexed cell is tried first (after an impurity retry) when it indexes this fraction of
#: the measured peak height, leaving at most 1 line in IMPURITY_SUBCELL_LINES_PER unindexed (3 at least).
IMPURITY_SUBCELL_FRACTION = 0.95
IMPURITY_SUBCELL_LINES_PER = 8
#: When the significant peaks (:func:`_index_weak_lines`, searched first) index with M20 ≥ this and a cell
#: that holds the composition, the strict search of the strong-line list gets CONFIDENT_STRICT_SECONDS.
WEAK_LINES_CONFIDENT_M20 = 20.0
CONFIDENT_STRICT_SECONDS = 4.0
#: The impurity retry gets up to IMPURITY_RETRY_SHARE of the indexing time limit (≤ IMPURITY_RETRY_SECONDS).
#: Measured on the 100 benchmark patterns: a strict search cut to 0.6 of the limit, with a retry of 1.0,
#: lost Eu(BIr)2's F cell (600 Å³, found after 11 s) and gained no match.
IMPURITY_RETRY_SHARE = 0.7
IMPURITY_RETRY_SECONDS = 20.0
#: The zero-recentred search (:func:`_with_zero_recentred`) takes at most ZERO_RECENTRE_SECONDS.
ZERO_RECENTRE_SECONDS = 6.0
#: The wide zero scan (:func:`_with_wide_zero_cubic`): when the best cell's M20 is below WIDE_ZERO_M20 and it is
#: not cubic, cubic-only searches with their zero-shift box centred ever further out, up to WIDE_ZERO_MAX
#: (degrees 2θ at Cu Kα1, scaled with the wavelength), in at most WIDE_ZERO_SECONDS; a cubic cell found is
#: kept when its M20 reaches WIDE_ZERO_M20. Its line tolerance is the default (0.03° at Cu Kα1, scaled) or
#: WIDE_ZERO_FWHM_TOLERANCE × the lines' median FWHM, whichever is larger: broad neutron lines are placed less
#: precisely (La0.5Ba0.5CoO3 on HRPT: FWHM 0.35–0.5°, lines up to 0.056° off the fitted cubic cell).
WIDE_ZERO_M20 = 20.0
WIDE_ZERO_FWHM_TOLERANCE = 0.15
WIDE_ZERO_MAX = 1.0
WIDE_ZERO_SECONDS = 2.0
#: Line tolerance of the main searches (significant peaks, strong-line list, impurity retry, zero recentred),
#: as a fraction of the lines' median FWHM, when above the indexer's default (0.03° at Cu Kα1, scaled).
#: Broad lines blend neighbouring reflections and their fitted positions sit off either one (GdWC2: up to
#: 0.08° at FWHM 0.31°). On the 100 benchmark patterns the right cell is among those used for 87 (81 with
#: the default alone; 86 at 0.35).
INDEXING_FWHM_TOLERANCE = 0.25
#: Index on profile-fitted line positions (:func:`xrdsolve.conditioning.peakfit.fit_peak_positions`) instead
#: of the maxima of the smoothed pattern. Off: on the 100 benchmark patterns the fitted lines find other
#: cells (GdWC2, HfSiRu, NaCaTaTiO6 gained; F2, Li3P2WO8 lost), not more of them; a variant without the
#: skew found more (64 first against 60) and solved fewer (match@20 0.62 against 0.64).
FIT_PEAK_POSITIONS = False
#: The cubic seat (:func:`_with_cubic_seat`): a cubic-only search of at most CUBIC_SEAT_SECONDS, which may
#: leave one line in CUBIC_SEAT_LINES_PER unindexed (at least one) when there are at least CUBIC_SEAT_LINES
#: lines (:func:`_cubic_seat_allowance`).
CUBIC_SEAT_SECONDS = 3.0
CUBIC_SEAT_LINES = 5
CUBIC_SEAT_LINES_PER = 6
#: A cubic cell is seated only when its M20 is at least the best cell's over CUBIC_SEAT_M20_RATIO (a 19 Å cubic
#: cell of M20 24 indexes rutile's lines, whose tetragonal cell has M20 2085).
CUBIC_SEAT_M20_RATIO = 20.0
#: Supercells tried before an indexed cell too small for one formula unit (see _with_supercells).
MAX_SUPERCELLS_PER_CELL = 2
#: Widening round (:func:`_widen`): under a time budget, when at least WIDEN_MIN_LEFT of the budget is left,
#: candidates are drawn again and ranked with the first round's: when the best refined candidate's GoF is
#: above WIDEN_GOF in the hinted space groups after the first ``max_spacegroups`` (indexing keeps up to
#: WIDEN_GROUPS_FACTOR times as many), else (or when there are no more) with fresh seeds in the same groups.
WIDEN_GOF = 1.5
WIDEN_MIN_LEFT = 0.2
WIDEN_GROUPS_FACTOR = 2
#: Seed offset of the widening round's draws.
WIDEN_SEED_OFFSET = 7919


@dataclass
class SolveOptions:
    """Settings of :func:`solve`. Times in seconds."""

    k: int = 20
    n_candidates: int = 96
    seed: int = 0
    time_budget: float | None = None
    use_generator: bool = True
    use_indexing: bool = True
    max_cells: int = 3
    max_z: int = 2
    max_spacegroups: int = 6
    screen_chunk: int = 64
    #: compositions tried when solving from a list of elements (most plausible first)
    max_compositions: int = 3
    #: disordered models for non-stoichiometric/mixed compositions: "auto" (added to the ordered
    #: candidates), "off" (ordered candidates of the stoichiometric parent only), "only" (disordered only)
    disorder: str = "auto"
    #: largest supercell multiplicity of ordered-defect models (0: none; ≥ 2 enables the order/disorder test)
    supercells: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pool:
    """Candidate structures and their provenance, in the order they were proposed."""

    structures: list[Structure] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)

    def add(self, structure: Structure, prov: dict[str, Any]) -> None:
        self.structures.append(structure)
        self.provenance.append(prov)

    def __len__(self) -> int:
        return len(self.structures)

    def prioritised(self) -> _Pool:
        """The same candidates, those built in an indexed cell first (enumerated Wyckoff sets, then random),
        then generator samples, then cells drawn from the composition: under a time budget, screening works
        through the pool in this order."""
        order = sorted(range(len(self)), key=lambda i: SOURCE_PRIORITY.get(self.provenance[i]["source"], 9))
        return _Pool([self.structures[i] for i in order], [self.provenance[i] for i in order])


class _Clock:
    def __init__(self, budget: float | None) -> None:
        self.start = time.perf_counter()
        self.budget = budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return math.inf if self.budget is None else self.budget - self.elapsed()


def _load_pattern(pattern_or_path: Any, radiation: Any) -> Any:
    from xrdsolve.conditioning import read_pattern
    from xrdsolve.conditioning.errors import MissingWavelengthError

    if isinstance(pattern_or_path, str | os.PathLike):
        pattern = read_pattern(pattern_or_path, radiation=radiation)
    else:
        pattern = pattern_or_path
        if radiation is not None:
            pattern = pattern.with_radiation(radiation)
    if pattern.radiation is None:
        raise MissingWavelengthError(
            f"{pattern.meta.get('source', 'pattern')}: the file does not state the wavelength; "
            "give it with --radiation (e.g. CuKa, MoKa, 0.4137)"
        )
    return pattern


def _index(
    pattern: Any,
    tried: dict[str, Any],
    clock: _Clock,
    options: SolveOptions,
    subcells_for: Composition | None = None,
    time_limit: float | None = None,
    composition: Composition | None = None,
) -> list[Any]:
    """Indexed cells with their extinction-compatible space groups, best first: [(CellSolution, [numbers])].
    A cell indexed here lists up to WIDEN_GROUPS_FACTOR × ``options.max_spacegroups`` groups: the first
    ``max_spacegroups`` are tried first, the others by the widening round (:func:`_widen`).

    The significant peaks, weak lines included (:func:`_index_weak_lines`), are indexed first, in up to 0.3 of
    ``time_limit`` (≤ 10 s). ``time_limit`` (s; default: 60 s without a budget, else 0.3 of what is left)
    bounds the strict search of the strong-line list, or CONFIDENT_STRICT_SECONDS when the
    significant peaks gave a cell of M20 ≥ WEAK_LINES_CONFIDENT_M20 that holds the composition; the cells of
    both are ranked together. When the best has M20 below IMPURITY_RETRY_M20, an impurity retry (on the
    significant peaks when there are IMPURITY_RETRY_LINES of them) may add up to IMPURITY_RETRY_SHARE of the
    limit (≤ IMPURITY_RETRY_SECONDS). On the 40 validation patterns of
    ``xrdsolve bench solve`` the significant peaks found the cell first as often as the strong-line list with
    its retries (18 against 19) in 158 s of searching against 421 s (GdMgPd 0.1 s against 18.8 s, MnF2 0.8
    against 32.1 s, Ti4GaC3 0.5 against 31.1 s: noise maxima on an amorphous hump defeat the strict search).
    These searches index within INDEXING_FWHM_TOLERANCE × the lines' median FWHM when that exceeds the
    indexer's default tolerance (``tried["indexing"]["tolerance"]``).

    With ``subcells_for`` (the stoichiometric parent of a vacancy composition) each cell is followed by its
    sub-cells (axes divided, index ≤ ``options.supercells``) that index the strong lines and hold at least
    one formula unit: the cell of the disordered average when the indexed cell is an ordered superstructure.
    With ``composition`` a best cell too small for one formula unit of it also triggers the unindexed-lines
    retry, each cell too small is preceded by its smallest supercells that hold one (:func:`_with_supercells`),
    and each cell's groups are those whose Wyckoff sites can hold the composition (:func:`_hinted_groups`).
    """
    from xrdsolve.conditioning.peakfit import indexing_lines
    from xrdsolve.conditioning.peaks import find_peaks
    from xrdsolve.refine.indexing.indexer import IndexingOptions, index_peaks, rank_solutions
    from xrdsolve.refine.indexing.observations import IndexingError, Peaks
    from xrdsolve.refine.indexing.settings import standard_monoclinic_setting

    found = find_peaks(pattern, max_peaks=40)
    lines = indexing_lines(pattern, found, fit=FIT_PEAK_POSITIONS)
    tt, height = lines.two_theta, lines.height
    wavelengths = list(pattern.radiation.wavelengths)
    tried["peaks"] = {"found": len(found), "after_kalpha2_removal": int(tt.size)}
    fwhm = float(statistics.median(found.fwhm)) if len(found.fwhm) else 0.0
    if tt.size == 3 and options.use_indexing:
        return _index_three_lines(pattern, tt, height, fwhm, options, tried, composition)
    if tt.size < 4 or not options.use_indexing:
        return []
    t0 = time.perf_counter()
    if time_limit is None:
        time_limit = 60.0 if clock.budget is None else max(3.0, 0.3 * clock.left())
    try:
        peaks = Peaks.from_two_theta(tt, float(wavelengths[0]), height)
    except IndexingError as exc:
        tried["indexing"] = {"error": str(exc)}
        return []
    # the significant peaks first (weak lines kept, noise maxima of a hump left out): when they index with a
    # cell that can hold the composition, the search of the strong-line list only adds cells, in a few seconds
    tolerance = _line_tolerance(peaks.wavelength, fwhm, INDEXING_FWHM_TOLERANCE)
    weak_cells, weak_peaks = _index_weak_lines(pattern, [], min(0.3 * time_limit, 10.0), tried, tolerance)
    v_min = _min_cell_volume(composition) if composition is not None else 0.0
    confident = bool(weak_cells) and weak_cells[0].m20 >= WEAK_LINES_CONFIDENT_M20
    confident = confident and weak_cells[0].volume >= v_min
    strict_limit = min(time_limit, CONFIDENT_STRICT_SECONDS) if confident else time_limit
    t_strict = time.perf_counter()
    try:
        cells = index_peaks(
            peaks, IndexingOptions(time_limit=strict_limit, max_solutions=10, tolerance=tolerance)
        )
    except IndexingError as exc:
        cells = []
        error = str(exc)
    else:
        error = ""
    tried["indexing_strict"] = {
        "seconds_allowed": round(strict_limit, 1),
        "found": len(cells),
        "seconds": round(time.perf_counter() - t_strict, 2),
    }
    cells = rank_solutions([*cells, *weak_cells], 10) if weak_cells else cells
    # a best cell too small for one formula unit of a known composition is as suspect as a low M20: an
    # impurity line can make a wrong small cell the only one that indexes every line
    too_small = composition is not None and bool(cells) and cells[0].volume < v_min
    retried = (not cells or cells[0].m20 < IMPURITY_RETRY_M20 or too_small) and tt.size >= (
        IMPURITY_RETRY_LINES_TOO_SMALL if too_small else IMPURITY_RETRY_LINES
    )
    if retried:
        # weak impurity lines (or a split peak) defeat a search that must index every line: try the
        # high-symmetry systems again allowing a few unindexed lines, and keep the better ranked cells. The
        # significant peaks are searched when there are enough of them: noise maxima of a hump are not among
        # them, and each one counts against the few lines that may be left unindexed
        on_weak = weak_peaks is not None and len(weak_peaks[0]) >= IMPURITY_RETRY_LINES
        before = cells
        cells = _index_with_unindexed(
            weak_peaks[0] if on_weak and weak_peaks is not None else peaks,
            cells,
            min(IMPURITY_RETRY_SHARE * time_limit, IMPURITY_RETRY_SECONDS),
            tried,
            tolerance,
        )
        tried["indexing_unindexed_lines"]["lines"] = "significant" if on_weak else "strong"
        if on_weak and weak_peaks is not None:
            new_cells = [c for c in cells if not any(c is b for b in before)]
            weak_peaks = (weak_peaks[0], [*weak_peaks[1], *new_cells])  # judged on the peaks they index
    cells = _with_zero_recentred(peaks, cells, min(ZERO_RECENTRE_SECONDS, 0.3 * time_limit), tried, tolerance)
    cells = _with_wide_zero_cubic(peaks, cells, min(WIDE_ZERO_SECONDS, 0.3 * time_limit), tried, fwhm)
    if not cells:
        tried["indexing"] = {"error": error or "no cell found"}
        return []
    good_cells = [c for c in cells if c.m20 >= MIN_M20]
    n_lines = min(len(peaks), IndexingOptions().n_lines)  # the lines the searches index
    seated = good_cells[: options.max_cells]
    cubic = _cubic_cells(peaks, n_lines, seated, min(CUBIC_SEAT_SECONDS, time_limit), tried)
    good = _with_cubic_seat(
        good_cells, options.max_cells, [c for c in cubic if c.m20 >= MIN_M20], composition, n_lines
    )
    planned = []
    for cell in good:
        try:
            hint_peaks = peaks
            if weak_peaks is not None and any(cell is w for w in weak_peaks[1]):
                hint_peaks = weak_peaks[0]  # a cell found from the weak lines is judged on them
            # candidates are built in each group's standard setting: an I or A monoclinic cell, or one whose
            # glide runs along a or a + c, is first described in the cell choice where it is C and along c
            cell = standard_monoclinic_setting(cell, hint_peaks)
            groups = _hinted_groups(cell, hint_peaks, options, composition, limit=_groups_kept(options))
        except Exception as exc:  # hints are advisory
            log.info("space-group hints failed: %s", exc)
            groups = []
        planned.append((cell, groups))
    subcells: list[dict[str, Any]] = []
    if subcells_for is not None and options.supercells >= 2:
        planned = _with_subcells(planned, peaks, height, subcells_for, options, subcells)
    elif retried:
        planned = _with_impurity_subcells(planned, peaks, height, options, subcells, composition)
    supercells: list[dict[str, Any]] = []
    if composition is not None:
        planned = _with_supercells(planned, peaks, composition, options, supercells)
    tried["indexing"] = {
        "solutions": [c.summary() for c in cells[:5]],
        "used": _used_cells(planned),
        "tolerance": round(tolerance, 4),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if subcells:
        tried["indexing"]["subcells"] = subcells
    if supercells:
        tried["indexing"]["supercells"] = supercells
    return planned


def _line_tolerance(wavelength: float, fwhm: float, per_fwhm: float) -> float:
    """2θ tolerance (degrees) of a search on broad or faint lines: ``per_fwhm`` × their median ``fwhm``
    (degrees), or the indexer's default at ``wavelength`` (Å) when that is larger."""
    from xrdsolve.refine.indexing.indexer import default_tolerance

    return max(default_tolerance(wavelength), per_fwhm * fwhm)


def _used_cells(planned: Sequence[tuple[Any, list[int]]]) -> list[dict[str, Any]]:
    """The record of each cell used (without its hkl list) with its hinted space groups."""
    return [{k: v for k, v in c.as_dict().items() if k != "hkl"} | {"spacegroups": g} for c, g in planned]


def _index_three_lines(
    pattern: Any,
    two_theta: Any,
    height: Any,
    fwhm: float,
    options: SolveOptions,
    tried: dict[str, Any],
    composition: Composition | None,
) -> list[Any]:
    """Cubic cells of a pattern that shows only three lines, with their hinted space groups (as :func:`_index`).

    Three lines test a cubic cell (one parameter, two ratios to match) but no other. The lines of so weak a
    pattern are weak or broad, and their fitted positions are off by a fair part of their width: the search's
    2θ tolerance is THREE_LINE_TOLERANCE_FWHM × the median FWHM (degrees) when that is above the default.
    With a ``composition`` only cells that hold a whole number of its formula units are kept. ScF3 (ReO3
    type, counts of a few tens above the background) shows 100, 200 and 210 only, 0.03–0.05° from where the
    4.08 Å cell puts them: the default 0.03° tolerance found no cell, and no cell was searched at all."""
    from xrdsolve.refine.indexing.indexer import IndexingOptions, index_peaks
    from xrdsolve.refine.indexing.observations import IndexingError, Peaks

    wavelength = float(pattern.radiation.wavelengths[0])
    tolerance = _line_tolerance(wavelength, fwhm, THREE_LINE_TOLERANCE_FWHM)
    record: dict[str, Any] = {"lines": 3, "systems": ["cubic"], "tolerance": round(tolerance, 4)}
    t0 = time.perf_counter()
    try:
        peaks = Peaks.from_two_theta(two_theta, wavelength, height)
        cells = index_peaks(
            peaks,
            IndexingOptions(
                systems=("cubic",),
                min_lines=3,
                tolerance=tolerance,
                time_limit=CUBIC_SEAT_SECONDS,
                max_solutions=10,
            ),
        )
    except IndexingError as exc:
        tried["indexing"] = record | {"error": str(exc)}
        return []
    cells = [c for c in cells if c.m20 >= MIN_M20]
    if composition is not None:
        cells = [c for c in cells if _holds_formula_units(composition, float(c.volume))]
    planned = [
        (cell, _hinted_groups(cell, peaks, options, composition, limit=_groups_kept(options)))
        for cell in cells[: options.max_cells]
    ]
    tried["indexing"] = record | {
        "solutions": [c.summary() for c in cells[:5]],
        "used": _used_cells(planned),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if not planned:
        tried["indexing"]["error"] = "no cubic cell indexes the three lines" + (
            " and holds whole formula units" if composition is not None else ""
        )
    return planned


def _with_zero_recentred(
    peaks: Any, cells: list[Any], time_limit: float, tried: dict[str, Any], tolerance: float | None = None
) -> list[Any]:
    """``cells`` with those of a search (every system, every line indexed, ``time_limit`` s) whose zero-shift
    box is centred on the best cell's zero shift, when that lies outside the box searched (± the default
    largest zero shift): a wrong cell with more lines to choose from can absorb a zero shift beyond the box
    that keeps the true cell out (Ho(CuSi)2, ThCr2Si2 type: zero +0.155°; its √5 × √5 × 1 I cell, zero
    +0.167°, was found first, and the true 3.95 × 10.02 Å cell in 0.5 s once the box was centred there)."""
    from xrdsolve.refine.indexing.indexer import (
        IndexingOptions,
        default_max_zero_shift,
        index_peaks,
        rank_solutions,
    )
    from xrdsolve.refine.indexing.observations import IndexingError

    box = default_max_zero_shift(peaks.wavelength)
    if not cells or abs(cells[0].zero_shift) <= box or time_limit < 0.5:
        return cells
    centre = float(cells[0].zero_shift)
    t0 = time.perf_counter()
    try:
        found = index_peaks(
            peaks,
            IndexingOptions(zero_centre=centre, time_limit=time_limit, max_solutions=10, tolerance=tolerance),
        )
    except IndexingError:
        found = []
    tried["indexing_zero_recentred"] = {
        "zero_centre": round(centre, 4),
        "found": len(found),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return rank_solutions([*cells, *found], 10) if found else cells


def _with_wide_zero_cubic(
    peaks: Any, cells: list[Any], time_limit: float, tried: dict[str, Any], fwhm: float = 0.0
) -> list[Any]:
    """``cells`` with the cubic cells of cubic-only searches whose zero-shift box (± the default largest zero
    shift) is centred ever further from 0 (alternating signs, up to WIDE_ZERO_MAX scaled with the
    wavelength), when the best cell is not cubic and its M20 is below WIDE_ZERO_M20 (or there is none). The
    scan stops at the first centre that gives a cubic cell of M20 ≥ WIDE_ZERO_M20, or after ``time_limit`` s.
    Lines are indexed within the default tolerance or WIDE_ZERO_FWHM_TOLERANCE × ``fwhm`` (the lines' median
    FWHM, degrees 2θ), whichever is larger.

    A zero shift beyond the box keeps every true cell out and can leave a low-symmetry cell that absorbs it
    on top: the HRPT neutron pattern of La0.5Ba0.5CoO3 (shared real data) has its lines 0.61° above those of
    its 3.89 Å cubic cell, and the searches within ±0.1° found only a monoclinic cell of M16 9.0; with its
    broad lines (FWHM 0.35–0.5°) the cubic cell indexes them within 0.06°, not 0.03°."""
    from xrdsolve.refine.indexing.indexer import (
        DEFAULT_MAX_ZERO_SHIFT,
        IndexingOptions,
        default_max_zero_shift,
        index_peaks,
        rank_solutions,
    )
    from xrdsolve.refine.indexing.observations import IndexingError

    best = cells[0] if cells else None
    if time_limit < 0.2 or (
        best is not None and (best.m20 >= WIDE_ZERO_M20 or best.crystal_system == "cubic")
    ):
        return cells
    box = default_max_zero_shift(peaks.wavelength)
    scale = box / DEFAULT_MAX_ZERO_SHIFT  # the wavelength's over Cu Kα1's
    widest = WIDE_ZERO_MAX * scale
    tolerance = _line_tolerance(peaks.wavelength, fwhm, WIDE_ZERO_FWHM_TOLERANCE)
    steps = int(widest / (2 * box))
    centres = [sign * 2 * box * k for k in range(1, steps + 1) for sign in (1.0, -1.0)]
    t0 = time.perf_counter()
    found: list[Any] = []
    searched = 0
    for centre in centres:
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0:
            break
        searched += 1
        try:
            hits = index_peaks(
                peaks,
                IndexingOptions(
                    systems=("cubic",),
                    zero_centre=centre,
                    tolerance=tolerance,
                    time_limit=left,
                    max_solutions=3,
                ),
            )
        except IndexingError:
            hits = []
        found = [c for c in hits if c.m20 >= WIDE_ZERO_M20]
        if found:
            break
    tried["indexing_wide_zero"] = {
        "tolerance": round(tolerance, 4),
        "centres_searched": searched,
        "found": [c.summary() for c in found],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return rank_solutions([*cells, *found], 10) if found else cells


def _cubic_cells(
    peaks: Any, n_lines: int, seated: list[Any], time_limit: float, tried: dict[str, Any]
) -> list[Any]:
    """Cubic cells of a search of its own (whole volume range, a few seconds) when none is among the cells
    ``seated``: of the ``n_lines`` lines searched, :func:`_cubic_seat_allowance` may be left unindexed. The
    general search keeps its ten best cells, and with few lines lower-symmetry cells fill them; one noise
    maximum taken for a line keeps the true cubic cell out altogether (CaAcZn2: a bump of an amorphous
    background at 30.6° beside six fcc lines made an orthorhombic I cell the best, M7 118)."""
    from xrdsolve.refine.indexing.indexer import IndexingOptions, index_peaks
    from xrdsolve.refine.indexing.observations import IndexingError

    if any(c.crystal_system == "cubic" for c in seated) or time_limit < 0.5:
        return []
    allowed = _cubic_seat_allowance(n_lines)
    t0 = time.perf_counter()
    try:
        found = index_peaks(
            peaks,
            IndexingOptions(
                systems=("cubic",), max_unindexed=allowed, time_limit=time_limit, max_solutions=10
            ),
        )
    except IndexingError:
        found = []
    tried["indexing_cubic"] = {
        "allowed": allowed,
        "found": len(found),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return found


def _cubic_seat_allowance(n_lines: int) -> int:
    """Lines a seated cubic cell may leave unindexed of the ``n_lines`` searched: one in CUBIC_SEAT_LINES_PER,
    at least one, when there are at least CUBIC_SEAT_LINES lines; none with fewer. ErPt3 (Cu3Au type, its
    superstructure lines too weak to see) gave four fcc-like lines and one impurity line: the strict search
    kept hexagonal cells of 274–734 Å³ indexing all five, and the 4.10 Å cubic cell was never tried."""
    return max(1, n_lines // CUBIC_SEAT_LINES_PER) if n_lines >= CUBIC_SEAT_LINES else 0


def _with_cubic_seat(
    cells: list[Any],
    max_cells: int,
    cubic: Sequence[Any] = (),
    composition: Composition | None = None,
    n_lines: int = 0,
) -> list[Any]:
    """The best ``max_cells`` of ``cells`` (ranked), with a cubic cell put second when none is among them
    (DICVOL's preference for the highest symmetry): the first of the cubic cells ranked below them, then of
    ``cubic`` (a cubic-only search), that leaves no more lines unindexed than the best cell — or one more,
    within :func:`_cubic_seat_allowance` of ``n_lines`` — with an M20 no less than the best cell's over
    CUBIC_SEAT_M20_RATIO. With a ``composition``, cells that hold a whole number of formula units
    (:func:`xrdsolve.composition.z_candidates`' tolerance) come first, then cells too small for one (their
    supercells are tried); other cells are not seated.

    With few lines a lower-symmetry cell with more free parameters can outrank the true cubic one by M20, and
    one too small for a formula unit is then used through its supercells: six lines of ErPt3 (Cu3Au type,
    its superstructure lines below 0.1 %) gave tetragonal 2.05 × 2.37 Å cells M6 1746 and the fcc-like cubic
    4.10 Å cell M6 640 fifth, so the ordered Pm-3m structure in that cell was never proposed. Four lines of
    the Heusler TmLuRh2 index cubic I 4.78, P 3.38 and F 6.75 Å cells equally; only F 6.75 holds whole
    formula units (4)."""
    good = cells[:max_cells]
    if not good or any(c.crystal_system == "cubic" for c in good):
        return good
    best = good[0].n_unindexed

    def may_sit(c: Any) -> bool:
        if c.crystal_system != "cubic":
            return False
        one_more = c.n_unindexed <= _cubic_seat_allowance(n_lines)
        return bool(c.n_unindexed <= best or (c.n_unindexed == best + 1 and one_more))

    pool = [
        c for c in (*cells[max_cells:], *cubic) if may_sit(c) and c.m20 * CUBIC_SEAT_M20_RATIO >= good[0].m20
    ]
    if composition is not None:
        # a cell too small for one formula unit is still seated (its supercells are tried), one too large not
        v_min = _min_cell_volume(composition)
        pool = [c for c in pool if c.volume < v_min or _holds_formula_units(composition, float(c.volume))]
        pool.sort(key=lambda c: c.volume < v_min)  # stable: cells that hold whole formula units first
    return [good[0], pool[0], *good[1:]] if pool else good


def _holds_formula_units(comp: Composition, volume: float) -> bool:
    """True when a whole number Z of formula units of ``comp`` fits ``volume`` (Å³) within Z_VOLUME_TOLERANCE,
    with Z × the formula's atoms ≤ MAX_ATOMS_PER_CELL."""
    from .composition import MAX_ATOMS_PER_CELL, Z_VOLUME_TOLERANCE, estimated_volume_per_formula

    reduced = comp.reduced_composition
    v_fu = estimated_volume_per_formula(reduced)
    z = max(1, round(volume / v_fu))
    fits = abs(math.log(volume / (z * v_fu))) <= Z_VOLUME_TOLERANCE
    return fits and z * reduced.num_atoms <= MAX_ATOMS_PER_CELL


def index_pattern(
    pattern: Any,
    time_limit: float = 20.0,
    max_cells: int = 3,
    composition: str | Composition | None = None,
) -> tuple[list[tuple[Any, list[int]]], dict[str, Any]]:
    """The solve's indexing on its own: cells (best first, M20 ≥ MIN_M20) with their extinction-compatible
    space-group numbers, and a record of what was tried (peaks, solutions, seconds).

    ``time_limit`` (s) sets the searches' times as in the solve (see :func:`_index`). With
    a ``composition`` the indexing is checked against it as in the solve (see :func:`_index`).
    """
    tried: dict[str, Any] = {}
    comp = Composition(composition) if isinstance(composition, str) else composition
    cells = _index(
        pattern,
        tried,
        _Clock(None),
        SolveOptions(max_cells=max_cells),
        time_limit=time_limit,
        composition=comp,
    )
    return cells, tried


def _index_weak_lines(
    pattern: Any, cells: list[Any], time_limit: float, tried: dict[str, Any], tolerance: float | None = None
) -> tuple[list[Any], tuple[Any, list[Any]] | None]:
    """``cells`` merged with the cells that index the pattern's *significant* peaks, weak lines included
    (:func:`xrdsolve.conditioning.peaks.significant_peaks`), re-ranked by M20; and those peaks with the cells
    found from them (their space-group hints use the weak lines too), or None when not searched.

    The strong-line picker misses weak lines of noisy patterns (a 10 % line at 10² counts), and the few lines
    left can make a wrong cell the only one that indexes them all; the weak lines often decide the cell
    (the 001 and 100 lines of a metrically pseudo-cubic tetragonal cell)."""
    from xrdsolve.conditioning.peakfit import indexing_lines
    from xrdsolve.conditioning.peaks import significant_peaks
    from xrdsolve.refine.indexing.indexer import IndexingOptions, index_peaks, rank_solutions
    from xrdsolve.refine.indexing.observations import IndexingError, Peaks

    lines = indexing_lines(pattern, significant_peaks(pattern, max_peaks=40), fit=FIT_PEAK_POSITIONS)
    tt, height = lines.two_theta, lines.height
    wavelengths = list(pattern.radiation.wavelengths)
    record: dict[str, Any] = {"lines": int(tt.size)}
    tried["indexing_weak_lines"] = record
    if tt.size < IMPURITY_RETRY_LINES or time_limit < 1.0:
        record["skipped"] = "too few lines" if tt.size < IMPURITY_RETRY_LINES else "no time left"
        return cells, None
    t0 = time.perf_counter()
    try:
        peaks = Peaks.from_two_theta(tt, float(wavelengths[0]), height)
        weak = index_peaks(
            peaks, IndexingOptions(time_limit=time_limit, max_solutions=10, tolerance=tolerance)
        )
    except IndexingError as exc:
        record["error"] = str(exc)
        return cells, None
    merged = rank_solutions([*cells, *weak], 10)
    record |= {
        "found": len(weak),
        "best_m20": round(float(weak[0].m20), 1) if weak else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return merged, (peaks, weak)


def _index_with_unindexed(
    peaks: Any, cells: list[Any], time_limit: float, tried: dict[str, Any], tolerance: float | None = None
) -> list[Any]:
    """``cells`` merged with solutions that leave a few lines unindexed, re-ranked
    (:func:`xrdsolve.refine.indexing.indexer.rank_solutions`): cubic/tetragonal/hexagonal with up to 3 (≤ 1 in
    4) in at most RETRY_HIGH_SYMMETRY_SHARE of ``time_limit`` seconds; then orthorhombic cells up to
    RETRY_ORTHORHOMBIC_VOLUME Å³ in at most RETRY_ORTHORHOMBIC_SHARE, one volume shell at a time, with one line
    left unindexed and, where that finds no cell in the shell, two (from 14 lines on, 1 in
    RETRY_TWO_UNINDEXED_LINES_PER); then larger ones indexing every line in the time left (each extra free cell
    parameter makes a wrong cell that skips lines easier to find, so the lower the symmetry, the fewer lines
    may be left), unless a cell already reaches IMPURITY_RETRY_M20. The small shells stop once an orthorhombic
    cell reaches M20 20, as one search over them would. The weak impurity lines of the benchmark (up to three,
    0.5–5 % of the strongest) put two lines of no lattice among DyMnFe's and Sr2CaWO6's first 20: leaving two
    found their cells in 5.3 and 0.2 s, leaving one found none; searched over both shells at once, leaving two
    instead of one lost Np2S3's, SrIn4Pd's and F2's cells (found leaving one in 3–7 s) to the time limit. The
    first search skips the lower symmetries once a higher-symmetry cell reaches M20 20, which a wrong
    hexagonal cell does on 9 lines. An orthorhombic cell is kept only when it beats every cell found before on
    M20: a lower symmetry has to earn its place.

    The small orthorhombic cells come before the large ones because a shell-by-shell search that must index
    every line spends its time in the large shells when one line is off (two overlapped peaks fitted as one):
    the one-line search of the small cells found PrSnRu's and F2's cells in 1 and 6 s."""
    from xrdsolve.refine.indexing.indexer import IndexingOptions, index_peaks, rank_solutions, volume_shells
    from xrdsolve.refine.indexing.observations import IndexingError
    from xrdsolve.refine.indexing.solution import same_lattice
    from xrdsolve.refine.indexing.systems import CrystalSystem

    deadline = time.perf_counter() + time_limit
    defaults = IndexingOptions()
    full = defaults.max_volume
    # (systems, lines allowed unindexed, share of the time, volume range); the small orthorhombic cells are
    # searched shell by shell, leaving one line and, where that finds no cell, two
    passes: list[tuple[tuple[CrystalSystem, ...], int, float, tuple[float, float]]] = [
        (
            ("cubic", "tetragonal", "hexagonal"),
            min(3, len(peaks) // 4),
            RETRY_HIGH_SYMMETRY_SHARE,
            (0.0, full),
        )
    ]
    two_allowed = len(peaks) >= 2 * RETRY_TWO_UNINDEXED_LINES_PER
    for shell in volume_shells(
        IndexingOptions(max_volume=RETRY_ORTHORHOMBIC_VOLUME)
    ):  # the search's own shells
        passes += [(("orthorhombic",), n, RETRY_ORTHORHOMBIC_SHARE, shell) for n in (1, 2)[: 1 + two_allowed]]
    passes.append((("orthorhombic",), 0, 1.0, (RETRY_ORTHORHOMBIC_VOLUME, full)))
    extra: list[Any] = []
    best_of_pass: list[Any] = []
    record = tried.setdefault("indexing_unindexed_lines", {"passes": []})
    small_deadline: float | None = None
    for systems, allowed, share, (v_lo, v_hi) in passes:
        small = systems == ("orthorhombic",) and v_hi <= RETRY_ORTHORHOMBIC_VOLUME
        left = min(deadline - time.perf_counter(), share * time_limit)
        if small:  # the small shells share one RETRY_ORTHORHOMBIC_SHARE, from the first one's start
            if small_deadline is None:
                small_deadline = time.perf_counter() + share * time_limit
            left = min(left, small_deadline - time.perf_counter())
        best = max((c.m20 for c in (*cells, *extra)), default=0.0)
        entry: dict[str, Any] = {"systems": list(systems), "allowed": allowed, "volume": [v_lo, v_hi]}
        if systems == ("orthorhombic",) and best >= IMPURITY_RETRY_M20:
            record["passes"].append(entry | {"skipped": f"M20 {best:.0f}"})
            continue
        if small and any(c.m20 >= defaults.stop_m20 for c in extra if c.crystal_system == "orthorhombic"):
            record["passes"].append(
                entry | {"skipped": f"a smaller cell reached M20 {defaults.stop_m20:.0f}"}
            )
            continue
        if small and allowed == 2 and record["passes"][-1].get("kept", 0):
            record["passes"].append(entry | {"skipped": "a cell leaving one line"})
            continue
        if left < 1.0:
            record["passes"].append(entry | {"skipped": "no time left"})
            continue
        t0 = time.perf_counter()
        try:
            found = index_peaks(
                peaks,
                IndexingOptions(
                    systems=systems,
                    max_unindexed=allowed,
                    time_limit=left,
                    max_solutions=10,
                    min_volume=v_lo,
                    max_volume=v_hi,
                    tolerance=tolerance,
                ),
            )
        except IndexingError:
            found = []
        entry |= {"found": len(found), "seconds": round(time.perf_counter() - t0, 2)}
        if systems == ("orthorhombic",) and found and max(c.m20 for c in found) <= best:
            found = []  # no better than the higher-symmetry cells
        entry["kept"] = len(found)
        record["passes"].append(entry)
        extra.extend(found)
        best_of_pass.extend(found[:1])  # index_peaks ranks its solutions
    merged = rank_solutions([*cells, *extra], 10)
    if not merged:
        return merged
    # the best of each search is kept among the first cells: which one is right is for the fits to say (a
    # wrong high-symmetry cell that leaves lines unindexed can out-rank a true low-symmetry one on M20)
    head = [merged[0]]
    for c in (*cells[:1], *best_of_pass):
        if not any(same_lattice(c.reduced_lattice(), h.reduced_lattice()) for h in head):
            head.append(c)
    return head + [c for c in merged[1:] if all(c is not h for h in head)]


def _with_subcells(
    planned: list[tuple[Any, list[int]]],
    peaks: Any,
    height: Any,
    parent: Composition,
    options: SolveOptions,
    record: list[dict[str, Any]],
) -> list[tuple[Any, list[int]]]:
    """``planned`` with each cell followed by its strong-line sub-cells (see :func:`_index`); ``record``
    receives their JSON summaries."""
    from xrdsolve.refine.indexing.extinctions import admissible_hints
    from xrdsolve.refine.indexing.solution import same_lattice
    from xrdsolve.refine.indexing.subcells import HOLOHEDRAL_P, strong_subcells

    v_min = _min_cell_volume(parent)
    out: list[tuple[Any, list[int]]] = []
    for cell, groups in planned:
        out.append((cell, groups))
        for sub in strong_subcells(cell, peaks.two_theta, height, max_index=options.supercells):
            reduced = sub.cell.reduced_lattice()
            if sub.cell.volume < v_min or any(same_lattice(reduced, c.reduced_lattice()) for c, _ in out):
                continue
            allowed = list(dict.fromkeys(h.number for h in admissible_hints(sub.cell, peaks)))
            first = HOLOHEDRAL_P.get(sub.cell.crystal_system)
            groups = ([first] if first in allowed else []) + [g for g in allowed if g != first]
            out.append((sub.cell, groups[: options.max_spacegroups]))
            record.append(sub.as_dict())
    return out


def _groups_kept(options: SolveOptions) -> int:
    """How many hinted space groups an indexed cell keeps: its first ``max_spacegroups`` are tried first,
    the rest by the widening round (:func:`_widen`)."""
    return WIDEN_GROUPS_FACTOR * options.max_spacegroups


def _hinted_groups(
    cell: Any, peaks: Any, options: SolveOptions, comp: Composition | None = None, limit: int | None = None
) -> list[int]:
    """The extinction-compatible space groups of ``cell`` (no observed line forbidden, or only weak lines by
    a group that explains far more absences: :func:`~xrdsolve.refine.indexing.extinctions.admissible_hints`),
    best first, at most ``limit`` (default ``options.max_spacegroups``). With ``comp`` only groups whose
    Wyckoff sites hold Z formula units for a Z the cell volume allows (:func:`xrdsolve.composition.z_candidates`)
    are kept, unless none does: a group that explains the absences best but cannot hold the atoms (Fm-3m for
    one ErPt3 in a 4.1 Å cell) would take the place of one that can. Which of those Z are tried is for
    :func:`_cell_zs` to say. The weak-line admission (Ho2Cr2C3's C2/m) is a narrower form of the likelihood
    ranking measured below: it needs twice the absences explained, and leaves the rutile's groups alone.

    Measured and not kept: ranking the groups by likelihood (absences explained × ln(1 / unobserved
    fraction of positions), less 5 nats per observed line only a forbidden reflection indexes, up to two
    such lines). It put SrIn4Pd's Cmcm first (one violating line among 31) without solving it, changed no
    rank on the 16 benchmark patterns whose first six groups it changes, and seated groups 134, 104 and 128,
    which forbid observed lines, among the demo rutile's first six."""
    from xrdsolve.refine.indexing.extinctions import admissible_hints

    n = options.max_spacegroups if limit is None else limit
    groups = list(dict.fromkeys(h.number for h in admissible_hints(cell, peaks)))
    if comp is not None:
        try:
            zs = z_candidates(comp, float(cell.volume))
        except (UsageError, ValueError):  # no Z can be judged (a formula unit too large): keep every group
            return groups[:n]
        fitting = [g for g in groups if any(fits_spacegroup(comp, z, g) for z in zs)]
        groups = fitting or groups
    return groups[:n]


def _cell_zs(comp: Composition, volume: float, groups: Sequence[int], max_z: int) -> list[int]:
    """Up to ``max_z`` formula units Z to try in a cell of ``volume`` (Å³) with hinted space ``groups``:
    of the Z the volume allows (:func:`xrdsolve.composition.z_candidates`, best volume first), those whose
    atoms fill the Wyckoff sites of more of the groups first, and none that fits no group (unless no Z
    fits one and the cell is not too small for a formula unit: then its supercells hold the candidates).

    The volume per formula unit is an estimate (±0.3 in ln V): on the 100 benchmark patterns, ranking Z by
    volume alone left the true Z out of the first two for NaCO3 (Z 6 of R-3c after 7 and 8, which no
    hinted group holds) and Ba2In (Z 4 of Pnma after 5 and 6), and spent half of Np2S3's candidates on a
    Z 3 that none of its orthorhombic groups holds."""
    zs = z_candidates(comp, volume)
    fitted = {z: sum(fits_spacegroup(comp, z, g) for g in groups) for z in zs}
    holding = [z for z in zs if fitted[z]] or ([] if volume < _min_cell_volume(comp) else zs)
    return sorted(holding, key=lambda z: -fitted[z])[:max_z]


def _min_cell_volume(comp: Composition) -> float:
    """Smallest cell volume (Å³) that holds one formula unit of ``comp``: e^-Z_VOLUME_TOLERANCE of its
    estimated volume per formula unit, the tolerance :func:`xrdsolve.composition.z_candidates` allows."""
    from .composition import Z_VOLUME_TOLERANCE, estimated_volume_per_formula

    return math.exp(-Z_VOLUME_TOLERANCE) * estimated_volume_per_formula(comp.reduced_composition)


def _with_supercells(
    planned: list[tuple[Any, list[int]]],
    peaks: Any,
    comp: Composition,
    options: SolveOptions,
    record: list[dict[str, Any]],
) -> list[tuple[Any, list[int]]]:
    """``planned`` with each cell too small for one formula unit of ``comp`` (volume below e^-Z_VOLUME_TOLERANCE
    of the estimated volume per formula) preceded by its smallest diagonal supercells that hold one
    (:func:`xrdsolve.refine.indexing.subcells.supercells`: the cell of an ordering whose superstructure lines
    are too weak to be measured, e.g. a Heusler compound indexed on its CsCl-type sub-cell); ``record``
    receives their JSON summaries."""
    from xrdsolve.refine.indexing.solution import same_lattice
    from xrdsolve.refine.indexing.subcells import supercells

    v_min = _min_cell_volume(comp)
    out: list[tuple[Any, list[int]]] = []
    for cell, groups in planned:
        for sup in supercells(cell, v_min)[:MAX_SUPERCELLS_PER_CELL]:
            reduced = sup.reduced_lattice()
            if any(same_lattice(reduced, c.reduced_lattice()) for c, _ in (*out, *planned)):
                continue
            out.append((sup, _hinted_groups(sup, peaks, options, comp, limit=_groups_kept(options))))
            record.append({"of": cell.summary(), "cell": sup.summary()})
        out.append((cell, groups))
    return out


def _with_impurity_subcells(
    planned: list[tuple[Any, list[int]]],
    peaks: Any,
    height: Any,
    options: SolveOptions,
    record: list[dict[str, Any]],
    composition: Composition | None = None,
) -> list[tuple[Any, list[int]]]:
    """``planned`` with, before each cell, its best sub-cell (axes divided, index ≤ 3, the cell's metric kept)
    that indexes at least IMPURITY_SUBCELL_FRACTION of the measured peak height and leaves at most one line
    in IMPURITY_SUBCELL_LINES_PER (3 at least) unindexed. When indexing had to allow unindexed lines, a
    supercell can win by indexing weak impurity lines as superstructure reflections; the smaller cell is
    tried first and the fits decide. At most ``max_cells`` + 1 cells are kept."""
    from xrdsolve.refine.indexing.solution import same_lattice
    from xrdsolve.refine.indexing.subcells import strong_subcells

    out: list[tuple[Any, list[int]]] = []
    for cell, groups in planned:
        for sub in strong_subcells(
            cell,
            peaks.two_theta,
            height,
            max_index=3,
            min_fraction=IMPURITY_SUBCELL_FRACTION,
            same_metric=True,
            complete=True,
        ):
            reduced = sub.cell.reduced_lattice()
            unindexed_max = max(3, sub.n_lines // IMPURITY_SUBCELL_LINES_PER)
            if sub.n_lines - sub.n_indexed > unindexed_max or any(
                same_lattice(reduced, c.reduced_lattice()) for c, _ in (*out, *planned)
            ):
                continue
            sub_groups = _hinted_groups(sub.cell, peaks, options, composition, limit=_groups_kept(options))
            out.append((sub.cell, sub_groups))
            record.append(sub.as_dict())
            break  # the best sub-cell of each cell
        out.append((cell, groups))
    return out[: options.max_cells + 1]


def _generator_candidates(
    pattern: Any,
    comp: Composition,
    n: int,
    seed: int,
    targets: Sequence[tuple[Any, int, Sequence[int] | None]],
    tried: dict[str, Any],
    stop_at: float | None = None,
) -> list[tuple[Structure, dict[str, Any]]]:
    """Samples of the shipped generator; empty (with the reason recorded) when it is not available.
    Targets are (indexed cell or None, Z, hinted space groups or None): in a cell with hinted groups the
    generator samples on their Wyckoff sites (space-group-aware mode), else without symmetry.
    With ``stop_at`` (a ``time.perf_counter()`` value) targets after the first, and batches of a large cell
    content after its first, are skipped once it has passed. Sampling stops once GENERATOR_PROBE_SAMPLES
    samples are drawn and none is physically plausible (recorded as ``stopped``)."""
    try:
        from xrdsolve.generate.sampler import sample
        from xrdsolve.generate.weights import default_weights_dir
    except ImportError as exc:
        tried["generator"] = {"used": False, "reason": f"generator not available ({exc})"}
        return []
    if not (Path(default_weights_dir()) / "model.safetensors").is_file():
        tried["generator"] = {"used": False, "reason": "no shipped weights in xrdsolve/weights/default"}
        return []
    out: list[tuple[Structure, dict[str, Any]]] = []
    per = max(1, n // max(len(targets), 1))
    skipped = 0
    plausible = False
    stopped = ""
    t0 = time.perf_counter()
    for i, (lat, z, groups) in enumerate(targets):
        if i > 0 and stop_at is not None and time.perf_counter() > stop_at:
            skipped += len(targets) - i
            break
        cell_content = comp.reduced_composition * z
        # a large cell content is sampled a few at a time (each sample costs ∝ atoms²), so the time share
        # holds from the first target on; a small one in one batch
        big = cell_content.num_atoms > GENERATOR_SMALL_CELL_ATOMS
        batches = (
            [per]
            if not big
            else [min(per - j, GENERATOR_BIG_CELL_BATCH) for j in range(0, per, GENERATOR_BIG_CELL_BATCH)]
        )
        on_sites = list(groups) if groups and lat is not None else None
        for j, batch in enumerate(batches):
            if j > 0 and stop_at is not None and time.perf_counter() > stop_at:
                skipped += 1
                break
            batch_seed = seed + i + 1000 * j
            try:
                try:
                    structures = sample(
                        pattern, cell_content, n=batch, seed=batch_seed, lattice=lat, spacegroups=on_sites
                    )
                except UsageError:  # the cell content fits no Wyckoff sites of the hinted groups: the
                    on_sites = None  # target's later batches sample without symmetry straight away
                    structures = sample(pattern, cell_content, n=batch, seed=batch_seed, lattice=lat)
            except Exception as exc:  # the generator must never sink the solve
                tried["generator"] = {"used": False, "reason": f"sampling failed: {exc}"}
                return out
            for s in structures:
                prov = {"source": "generator", "seed": batch_seed, "z": z, "lattice_given": lat is not None}
                out.append((s, prov | ({"spacegroups": on_sites} if on_sites else {})))
                # one plausible sample settles it (the pool's plausibility filter judges every sample)
                plausible = plausible or implausibility(s, comp) is None
            if len(out) >= GENERATOR_PROBE_SAMPLES and not plausible:
                stopped = (
                    f"its first {len(out)} samples were all physically implausible; "
                    f"{len(targets) - i - 1} of {len(targets)} cell/Z targets not sampled"
                )
                break
        if stopped:
            break
    tried["generator"] = {"used": True, "samples": len(out), "seconds": round(time.perf_counter() - t0, 2)}
    if stopped:
        tried["generator"]["stopped"] = stopped
    if skipped:
        tried["generator"]["time_budget"] = f"{skipped} of {len(targets)} cell/Z targets not (fully) sampled"
    return out


def _propose(
    pattern: Any,
    comp: Composition,
    cells: Sequence[Any],
    options: SolveOptions,
    tried: dict[str, Any],
    stop_generator_at: float | None = None,
    instrument: Any = None,
    prescreen_seconds: float | None = None,
) -> _Pool:
    """Candidates of ``comp`` in the indexed ``cells`` (generator samples, prescreened Wyckoff draws,
    random symmetric structures). ``prescreen_seconds``: wall-clock limit of all prescreening, counted
    from its start (beyond it, cells get the plain Wyckoff walk)."""
    pool = _Pool()
    prescreen: dict[str, Any] = {"drawn": 0, "kept": 0, "seconds": 0.0, "limit_s": prescreen_seconds}
    # (cell, Z, hinted groups, crystal systems, weight): earlier cells and likelier Z get more candidates
    plans: list[tuple[Any, int, list[int] | None, list[str] | None, float]] = []
    for rank, (cell, groups) in enumerate(cells):
        groups = groups[: options.max_spacegroups]
        zs = _cell_zs(comp, float(cell.volume), groups, options.max_z)
        plans.extend(
            (cell, z, groups or None, [cell.crystal_system], 1.0 / ((rank + 1) ** 2 * (j + 1)))
            for j, z in enumerate(zs)
        )
    if not plans:
        plans = [(None, z, None, None, 1.0) for z in z_candidates(comp)[:6]]
    n_random = options.n_candidates
    if options.use_generator:
        targets = [(None if c is None else c.lattice(), z, g) for c, z, g, *_ in plans[:4]]
        gen = _generator_candidates(
            pattern, comp, options.n_candidates // 2, options.seed, targets, tried, stop_generator_at
        )
        for s, prov in gen:
            pool.add(s, prov)
        n_random = max(options.n_candidates - len(gen), options.n_candidates // 2)
    else:
        tried["generator"] = {"used": False, "reason": "switched off"}
    total_weight = sum(p[4] for p in plans)
    # prescreening time is shared among the cells and Z like the candidates; what one leaves goes on
    weight_left = sum(p[4] for p in plans if p[0] is not None and p[2])
    for i, (cell, z, plan_groups, plan_systems, weight) in enumerate(plans):
        share = max(2, round(n_random * weight / total_weight))
        seed = options.seed * 1000 + i
        cell_params = None if cell is None else (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
        if cell_params is not None and plan_groups:
            fraction = weight / weight_left if weight_left > 0 else 1.0
            weight_left -= weight
            drawn = _prescreened(
                pattern, comp, z, plan_groups, share, cell, seed, instrument, prescreen, fraction
            )
        else:
            drawn = random_symmetric_structures(
                comp, [z], share, seed=seed, crystal_systems=plan_systems, lattice=cell_params
            )
        for s, spec in drawn:
            pool.add(s, _provenance(spec, cell))
    pool = pool.prioritised()
    tried["candidates"] = {
        "total": len(pool),
        "by_source": {
            src: sum(p["source"] == src for p in pool.provenance)
            for src in ("generator", "random", "random+indexing", "enumerated+indexing")
        },
        "plans": [{"cell": None if c is None else c.summary(), "z": z} for c, z, *_ in plans],
    }
    if prescreen["drawn"]:
        tried["prescreen"] = prescreen | {"seconds": round(prescreen["seconds"], 2)}
    return pool


def _prescreened(
    pattern: Any,
    comp: Composition,
    z: int,
    groups: Sequence[int],
    n: int,
    cell: Any,
    seed: int,
    instrument: Any,
    record: dict[str, Any],
    time_fraction: float = 1.0,
) -> list[tuple[Structure, CandidateSpec]]:
    """The best ``n`` of many Wyckoff trials in an indexed cell (:mod:`xrdsolve.prescreen`), given
    ``time_fraction`` of the prescreening time left (``record["limit_s"]`` less ``record["seconds"]``); the
    Wyckoff walk of :func:`enumerated_symmetric_structures` when prescreening is impossible (e.g. the
    pattern lacks a wavelength) or its time is up. ``record`` accumulates trials, kept candidates and
    seconds."""
    from xrdsolve.refine.rietveld import _instrument_for

    from .prescreen import prescreened_structures

    lattice = (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    t0 = time.perf_counter()
    limit = record.get("limit_s")
    if limit is not None and record["seconds"] >= limit:
        record["skipped"] = record.get("skipped", 0) + 1
        return enumerated_symmetric_structures(
            comp, z, groups, n, lattice=lattice, seed=seed, centring=cell.centring
        )
    try:
        inst, _ = _instrument_for(pattern, instrument, None, anomalous=False)
        drawn = prescreened_structures(
            pattern,
            comp,
            z,
            groups,
            n,
            lattice=lattice,
            zero_shift=cell.zero_shift,
            instrument=inst,
            seed=seed,
            stop_at=None if limit is None else t0 + time_fraction * (limit - record["seconds"]),
            centring=cell.centring,
        )
    except Exception as exc:  # prescreening only orders candidates: never let it sink the solve
        log.warning("prescreening failed (%s); Wyckoff walk instead", exc)
        record["failed"] = str(exc)
        drawn = []
    record["seconds"] += time.perf_counter() - t0
    if drawn:
        record["drawn"] += int(str(drawn[0][1].extra.get("drawn", 0)))
        record["kept"] += len(drawn)
        return drawn
    return enumerated_symmetric_structures(
        comp, z, groups, n, lattice=lattice, seed=seed, centring=cell.centring
    )


def _provenance(spec: CandidateSpec, cell: Any) -> dict[str, Any]:
    prov = spec.to_dict()
    if cell is not None:
        prov["source"] = f"{spec.source}+indexing"
        prov["cell"] = cell.summary()
    return prov


def screening_two_theta_max(pattern: Any, instrument: Any) -> float | None:
    """Upper 2θ limit (degrees) of the screening fits: where d reaches :data:`SCREEN_D_MIN` at the longest
    wavelength, or None (the whole pattern) when that is past the pattern's end, keeps fewer than
    :data:`SCREEN_MIN_POINTS` points or the wavelength is unknown."""
    from xrdsolve.refine.errors import RefineError
    from xrdsolve.refine.rietveld import _instrument_for

    try:
        inst, _ = _instrument_for(pattern, instrument, None, anomalous=False)
    except RefineError:  # no wavelength: the refinement says so itself
        return None
    ratio = max(inst.radiation.wavelengths) / (2.0 * SCREEN_D_MIN)
    if ratio >= 1.0:
        return None
    limit = math.degrees(2.0 * math.asin(ratio))
    tt = pattern.two_theta
    if limit >= tt[-1] or int((tt <= limit).sum()) < SCREEN_MIN_POINTS:
        return None
    return limit


def _refine_chunks(
    pattern: Any,
    structures: Sequence[Structure],
    stages: Any,
    instrument: Any,
    chunk: int,
    progress: Callable[[int], None] | None = None,
    stop_after: float | None = None,
    screening: bool = False,
) -> list[Any]:
    """Refine ``structures`` in batches of ``chunk``; a result per structure (None when it failed).
    ``screening``: quick fits ranked by Rwp alone — no anomalous terms (a few % of |F|²), no R_Bragg and no
    esds (one more Jacobian per batch): RefineOptions.anomalous, .r_bragg and .esds off; and only to
    d = :data:`SCREEN_D_MIN` (:func:`screening_two_theta_max`).

    With ``stop_after`` (a ``time.perf_counter()`` value), a batch after the first is not started when the
    previous batch took longer than the time left before it: the list is then shorter than ``structures``;
    the refinement itself stops iterating at that time too (RefineOptions.deadline), keeping the best
    parameters reached.
    """
    from xrdsolve.refine.rietveld import RefineOptions, background_terms, refine_candidates

    two_theta_max = screening_two_theta_max(pattern, instrument) if screening else None
    used = (
        pattern.two_theta if two_theta_max is None else pattern.two_theta[pattern.two_theta <= two_theta_max]
    )
    # one staged pass per candidate: the solve spends its time on more candidates rather than restarts
    options = RefineOptions(
        deadline=stop_after,
        annealing_restarts=(),
        rescue_gof=None,
        anomalous=False if screening else None,
        n_background=background_terms(used),
        r_bragg=not screening,
        esds=not screening,
        two_theta_max=two_theta_max,
    )
    if stages is not None:
        options = replace(options, strategy=stages)
    results: list[Any] = []
    last_batch_s = 0.0
    for start in range(0, len(structures), chunk):
        started = time.perf_counter()
        if start > 0 and stop_after is not None and started + last_batch_s > stop_after:
            break
        part = structures[start : start + chunk]
        try:
            results.extend(refine_candidates(pattern, part, instrument=instrument, options=options))
        except Exception as exc:  # one bad chunk must not sink the solve: refine its members one by one
            log.warning("batched refinement failed (%s); refining one at a time", exc)
            for s in part:
                try:
                    results.extend(refine_candidates(pattern, [s], instrument=instrument, options=options))
                except Exception as exc_one:
                    log.info("candidate dropped: %s", exc_one)
                    results.append(None)
        if progress is not None:
            progress(len(part))
        last_batch_s = time.perf_counter() - started
    return results


def _plausible(pool: _Pool, tried: dict[str, Any]) -> _Pool:
    """``pool`` without the candidates that cannot be crystal structures of their composition (atoms far
    closer than their radii allow, or another composition: :func:`xrdsolve.plausibility.implausibility`);
    ``tried["plausibility"]`` counts them by source with one reason each."""
    kept = _Pool()
    dropped: dict[str, dict[str, Any]] = {}
    for s_, prov in zip(pool.structures, pool.provenance, strict=True):
        why = implausibility(s_, Composition(prov["composition"]))
        if why is None:
            kept.add(s_, prov)
        else:
            entry = dropped.setdefault(str(prov.get("source", "?")), {"left_out": 0, "example": why})
            entry["left_out"] += 1
    tried["plausibility"] = {"proposed": len(pool), "kept": len(kept), "left_out_by_source": dropped}
    return kept


def _score(result: Any) -> float:
    """Ranking score: Rwp inflated by the number of free parameters relative to the data (lower is better)."""
    if result is None or not math.isfinite(result.rwp):
        return math.inf
    n_obs, n_par = max(result.n_obs, 1), max(result.n_params, 0)
    return float(result.rwp) * math.sqrt(n_obs / max(n_obs - n_par, 1))


def _formula_units(structure: Any) -> int:
    """Formula units in the primitive cell of ``structure`` (translations found within 0.25 Å)."""
    try:
        primitive = structure.get_primitive_structure(tolerance=PRIMITIVE_TOLERANCE)
    except Exception:  # pragma: no cover - a failed search leaves the cell as given
        primitive = structure
    return max(1, round(len(primitive) / structure.composition.reduced_composition.num_atoms))


def _ranked(refined: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    """``refined`` in rank order: plausible first, then by score, each doubling of the formula units of the
    primitive cell (over the fewest among them) inflating the score by :func:`_supercell_penalty` of the best
    plausible fit's GoF. Between two fits the data cannot tell apart, the smaller cell is the simpler description
    (ErPaO4: a Z = 4 I4/mcm arrangement refined to the GoF of the true Z = 1 structure, 0.99; PrNiSb: a
    Z = 3 P-62m one to GoF 1.286 against the true Z = 1 structure's 1.298). When the best fit reaches the
    counting noise, a small difference is real (RuO2: pyrite-type Pa-3, Z = 4, GoF 0.991 against fluorite-type
    Fm-3m, Z = 1 in its primitive cell, 1.001); above it, part of a better fit can be the larger cell's
    extra freedom fitting what no candidate models. Each provenance records its ``formula_units``."""
    if not refined:
        return []
    z = [_formula_units(r.phases[0].structure) if r is not None else 1 for r, _ in refined]
    z_min = min(z)
    for (_, prov), z_i in zip(refined, z, strict=True):
        prov["formula_units"] = z_i
    scores = [_score(r) for r, _ in refined]
    plausible = [i for i, (_, prov) in enumerate(refined) if "implausible" not in prov] or list(range(len(z)))
    best = min(plausible, key=lambda i: scores[i])
    per_doubling = _supercell_penalty(float(refined[best][0].gof)) if math.isfinite(scores[best]) else 0.0

    def key(i: int) -> tuple[bool, float]:
        return ("implausible" in refined[i][1], scores[i] * (1.0 + per_doubling * math.log2(z[i] / z_min)))

    return [refined[i] for i in sorted(range(len(refined)), key=key)]


def _supercell_penalty(best_gof: float) -> float:
    """Score inflation per doubling of the formula units in the primitive cell, given the best fit's GoF:
    SUPERCELL_PENALTY_AT_NOISE at GoF ≤ 1, growing by SUPERCELL_PENALTY_PER_GOF per unit above, at most
    SUPERCELL_PENALTY."""
    excess = max(best_gof - 1.0, 0.0) if math.isfinite(best_gof) else 0.0
    return min(SUPERCELL_PENALTY, SUPERCELL_PENALTY_AT_NOISE + SUPERCELL_PENALTY_PER_GOF * excess)


def _deduplicate(ranked: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    """``ranked`` without the refined candidates that StructureMatcher (the benchmark's tolerances) finds
    equal to a better-ranked one. ``group_structures`` reduces each structure once rather than once per pair
    (16 distinct large cells of HoWClO4: 4.4 s pairwise)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    structures = [result.phases[0].structure for result, _ in ranked]
    rank_of = {id(st): i for i, st in enumerate(structures)}
    # each group's best-ranked member stands for it (group_structures keeps the input order within a group)
    best = sorted(min(rank_of[id(st)] for st in group) for group in matcher.group_structures(structures))
    return [ranked[i] for i in best]


def solve(
    pattern_or_path: Any,
    composition: str | Composition | None = None,
    *,
    elements: str | Sequence[str] | None = None,
    radiation: Any = None,
    instrument: Any = None,
    options: SolveOptions | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Solution:
    """Solve a powder pattern: ranked, refined candidate structures.

    Parameters
    ----------
    pattern_or_path : a :class:`~xrdsolve.conditioning.Pattern` or a path to any supported file.
    composition : formula with or without Z (``TiO2``, ``Ti2O4``); Z is taken from the indexed cell.
    elements : allowed elements without stoichiometry (``"Li,Mn,O"``), instead of a composition:
        cell contents that fill the indexed cell and are charge balanced are proposed
        (:func:`~xrdsolve.composition.propose_compositions`) and the best few are all tried.
    radiation : overrides or supplies the wavelength (``CuKa``, ``0.4137``).
    instrument : a GSAS .prm/.instprm path or ``InstrumentParameters`` with starting profile values.
    options, overrides : :class:`SolveOptions` (``k``, ``n_candidates``, ``seed``, ``time_budget`` in s, ...).

    Never fabricates an answer: when nothing fits, the returned Solution has no candidates and its
    ``messages`` say what was tried.
    """
    from tqdm.auto import tqdm

    opts = options or SolveOptions()
    if overrides:
        opts = SolveOptions(**{**opts.to_dict(), **overrides})
    if composition is None and elements is None:
        raise UsageError("a composition is needed (e.g. --composition TiO2, or --elements Ti,O)")
    if composition is not None and elements is not None:
        raise UsageError("give either a composition or a list of elements, not both")
    plan = _disorder_plan(composition, opts)
    if plan is not None and (plan.vacancies or opts.disorder != "off"):
        comp: Composition | None = plan.parent
    else:
        comp = parse_composition(composition) if composition is not None else None
    element_list = [e.symbol for e in parse_elements(elements)] if elements is not None else None
    disorder_runs = plan is not None and opts.disorder != "off"
    # under a budget, the disordered models get the last DISORDER_SHARE of it (they are the answer for a
    # non-stoichiometric composition): the stages before them see the rest as their budget
    kept_for_disorder = DISORDER_SHARE if disorder_runs else 0.0
    clock = _Clock(None if opts.time_budget is None else opts.time_budget * (1.0 - kept_for_disorder))
    pattern = _load_pattern(pattern_or_path, radiation)
    inst = _load_instrument(instrument)
    tried: dict[str, Any] = {}
    messages: list[str] = []
    solution_opts = opts.to_dict() | (
        {"composition": comp.formula} if comp is not None else {"elements": element_list}
    )

    bar = tqdm(total=4, desc="solve", unit="stage", disable=not progress, leave=False)
    bar.set_postfix_str("peaks + indexing")
    vacancy_parent = plan.parent if plan is not None and plan.vacancies and opts.disorder != "off" else None
    cells = _index(pattern, tried, clock, opts, subcells_for=vacancy_parent, composition=comp)
    bar.update()
    if tried.get("peaks", {}).get("after_kalpha2_removal", 0) < 3:
        bar.close()
        messages.append("fewer than 3 peaks found: the sample may be amorphous or the pattern empty")
        return Solution(pattern, [], tried, messages, solution_opts)
    if not cells:
        messages.append(
            f"indexing found no trustworthy cell (M20 < {MIN_M20:.0f}); cells drawn from the composition"
        )

    if comp is not None:
        compositions = [comp]
    else:
        compositions = _compositions_from_elements(element_list or [], cells, opts, tried, messages)
        if not compositions:
            bar.close()
            return Solution(pattern, [], tried, messages, solution_opts)

    bar.set_postfix_str("candidates")
    pool = _Pool()
    for comp_i in compositions:
        share = replace(opts, n_candidates=max(4, opts.n_candidates // len(compositions)))
        tried_i: dict[str, Any] = tried if len(compositions) == 1 else {}
        stop_gen = None if clock.budget is None else time.perf_counter() + GENERATOR_SHARE * clock.left()
        pre_s = (
            PRESCREEN_SECONDS_WITHOUT_BUDGET if clock.budget is None else PRESCREEN_SHARE * clock.left()
        ) / len(compositions)
        part = _propose(pattern, comp_i, cells, share, tried_i, stop_gen, inst, pre_s)
        if len(compositions) > 1:
            tried.setdefault("by_composition", {})[comp_i.reduced_formula] = {
                k: tried_i[k] for k in ("generator", "candidates") if k in tried_i
            }
        for s_, prov in zip(part.structures, part.provenance, strict=True):
            pool.add(s_, prov | {"composition": comp_i.reduced_formula})
    pool = _plausible(pool, tried)
    bar.update()
    if not len(pool):
        bar.close()
        names = ", ".join(c.reduced_formula for c in compositions)
        messages.append(f"no candidate structure of {names} could be built in the allowed cells")
        return Solution(pattern, [], tried, messages, solution_opts)

    refined = _screen_and_refine(pattern, pool, opts, inst, clock, tried, messages, vacancy_parent, bar)
    bar.close()
    _mark_implausible(refined)
    if len(compositions) == 1:
        widened = _widen(pattern, compositions[0], cells, refined, opts, inst, clock, tried, messages)
        _mark_implausible(widened)
        refined += widened
    ranked = _ranked(refined)
    unique = _deduplicate(ranked)
    candidates = [
        Candidate.from_result(
            r, prov | {"converged": bool(r.converged), "status": r.status}, rank=n + 1, score=_score(r)
        )
        for n, (r, prov) in enumerate(unique)
    ]
    decisions: list[tuple[str, Any]] = []
    if disorder_runs and candidates:
        deadline = None if opts.time_budget is None else clock.start + opts.time_budget
        candidates, decisions = _with_disorder(
            pattern, candidates, plan, opts, inst, deadline, tried, messages
        )
    tried["seconds"] = round(clock.elapsed(), 2)
    if opts.time_budget is not None and clock.elapsed() > opts.time_budget:
        messages.append(f"time budget of {opts.time_budget:.0f} s exceeded ({clock.elapsed():.0f} s)")
    if candidates and "implausible" in candidates[0].provenance:
        messages.append(
            f"every refined candidate is physically implausible ({candidates[0].provenance['implausible']})"
        )
    if candidates and candidates[0].gof > 3:
        messages.append(
            f"best GoF is {candidates[0].gof:.1f}: no candidate describes the pattern well "
            "(multiphase sample, wrong composition, or a structure outside the candidates tried)"
        )
    return Solution(pattern, candidates, tried, messages, solution_opts, order_decisions=decisions)


def _screen_and_refine(
    pattern: Any,
    pool: _Pool,
    opts: SolveOptions,
    inst: Any,
    clock: _Clock,
    record: dict[str, Any],
    messages: list[str],
    vacancy_parent: Composition | None = None,
    bar: Any = None,
    note: str = "time budget",
) -> list[tuple[Any, dict[str, Any]]]:
    """Screen every candidate of ``pool`` (quick profile fit), then refine the best ``opts.k`` (full staged
    Rietveld) within the time budget of ``clock``: [(RefinementResult, provenance)] of the refined ones.
    ``record`` receives the "screening" and "rietveld" entries, ``messages`` what the budget cut (starting
    with ``note``); ``bar`` (a tqdm bar) advances by a stage after each."""
    from xrdsolve.refine.rietveld import Stage

    if bar is not None:
        bar.set_postfix_str(f"screening {len(pool)}")
    screen = tuple(Stage(n, g, it) for n, g, it in SCREEN_STAGES)
    t0 = time.perf_counter()
    # with a time budget, screening may use up to SCREEN_SHARE of what is left, in batches
    budgeted = clock.budget is not None
    screen_chunk = min(opts.screen_chunk, 16) if budgeted else opts.screen_chunk
    stop = t0 + SCREEN_SHARE * clock.left() if budgeted else None
    # screening fits scale, zero, cell and widths only, ranked by Rwp: no anomalous terms, R_Bragg or esds
    # (R_Bragg took half of a 31 s screening batch of large junk cells, the esds' Jacobian 5 s of another)
    screened = _refine_chunks(
        pattern, pool.structures, screen, inst, screen_chunk, stop_after=stop, screening=True
    )
    record["screening"] = {
        "refined": len(screened),
        "proposed": len(pool),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if len(screened) < len(pool):
        messages.append(
            f"{note}: screened {len(screened)} of {len(pool)} candidates (the rest were not tried)"
        )
    order = sorted(range(len(screened)), key=lambda i: _score(screened[i]))
    finite = [i for i in order if screened[i] is not None and math.isfinite(screened[i].rwp)]
    best = finite[: opts.k]
    if vacancy_parent is not None and opts.supercells >= 2 and finite:
        # the defect orderings start from the smallest cell: keep its best candidate for the final stages
        from .disorder import smallest_cell_index

        smallest = finite[smallest_cell_index([screened[i].phases[0].structure for i in finite]) or 0]
        if smallest not in best:
            best.append(smallest)
    if bar is not None:
        bar.update()
        bar.set_postfix_str(f"Rietveld on {len(best)}")
    t0 = time.perf_counter()
    screen_cost = record["screening"]["seconds"] / max(len(screened), 1)
    if budgeted and best and clock.left() < FINAL_RIETVELD_MIN_SCREENS * screen_cost:
        # no time left for even one full refinement: the screening fits are the answer (budget kept)
        final = [screened[i] for i in best]
        record["rietveld"] = {"refined": 0, "skipped": f"{max(clock.left(), 0.0):.1f} s left"}
        messages.append(
            f"{note}: no time left for the full Rietveld; the best {len(best)} are ranked by their "
            "screening fits (scale, background, lattice, zero; atoms as proposed)"
        )
        for i in best:
            pool.provenance[i]["refined"] = "screening only"
    else:
        # best first, in small batches when there is a budget, so the best are refined in any case
        final_chunk = max(4, -(-len(best) // 4)) if budgeted else opts.screen_chunk
        stop = clock.start + clock.budget if clock.budget is not None else None
        final = _refine_chunks(
            pattern, [pool.structures[i] for i in best], None, inst, final_chunk, stop_after=stop
        )
        record["rietveld"] = {"refined": len(final), "seconds": round(time.perf_counter() - t0, 2)}
    if len(final) < len(best):
        messages.append(f"{note}: full Rietveld on the best {len(final)} of {len(best)} screened candidates")
        best = best[: len(final)]
    if bar is not None:
        bar.update()
    return [(r, pool.provenance[i]) for r, i in zip(final, best, strict=True) if r is not None]


def _mark_implausible(refined: Sequence[tuple[Any, dict[str, Any]]]) -> None:
    """Record in the provenance of each refined candidate that collapsed into an implausible structure why
    (it then ranks after every plausible one)."""
    for r, prov in refined:
        why = implausibility(r.phases[0].structure, Composition(prov["composition"]))
        if why is not None:
            prov["implausible"] = why


def _widen(
    pattern: Any,
    comp: Composition,
    cells: Sequence[Any],
    refined: Sequence[tuple[Any, dict[str, Any]]],
    opts: SolveOptions,
    inst: Any,
    clock: _Clock,
    tried: dict[str, Any],
    messages: list[str],
) -> list[tuple[Any, dict[str, Any]]]:
    """The widening round: under a time budget, when at least WIDEN_MIN_LEFT of the budget is left,
    candidates are proposed again (no generator). When the best plausible refined candidate fits worse than
    GoF WIDEN_GOF, in each indexed cell's hinted space groups after its first ``max_spacegroups``; when it
    fits well (or a cell has no more groups), in the same groups with fresh seeds (in cells drawn from the
    composition when indexing failed) — a good fit can still be a wrong arrangement of the right cell, e.g.
    light atoms on the wrong sites. They are screened and refined like the first round's, within the budget;
    returned for ranking with them (provenance ``round`` 2). ``tried["widening"]`` says whether it ran, why
    and where."""
    plausible = [r for r, prov in refined if "implausible" not in prov]
    gof = min((float(r.gof) for r in plausible if math.isfinite(r.gof)), default=math.inf)
    if clock.budget is None:
        tried["widening"] = {"ran": False, "reason": "no time budget"}
        return []
    left = clock.left()
    if left < WIDEN_MIN_LEFT * clock.budget:
        tried["widening"] = {"ran": False, "reason": f"{max(left, 0.0):.1f} s left"}
        return []
    t0 = time.perf_counter()
    poor = gof > WIDEN_GOF
    record: dict[str, Any] = {
        "ran": True,
        "reason": f"best GoF {gof:.2f} > {WIDEN_GOF}" if poor else f"{left:.1f} s left",
        "draws": "later space groups" if poor else "fresh seeds",
    }
    if poor:
        wider = [(cell, list(groups[opts.max_spacegroups :]) or list(groups)) for cell, groups in cells]
    else:
        wider = [(cell, list(groups[: opts.max_spacegroups])) for cell, groups in cells]
    record["spacegroups"] = [groups for _, groups in wider]
    round_opts = replace(opts, seed=opts.seed + WIDEN_SEED_OFFSET, use_generator=False)
    pool = _propose(pattern, comp, wider, round_opts, record, None, inst, PRESCREEN_SHARE * left)
    for prov in pool.provenance:
        prov |= {"composition": comp.reduced_formula, "round": 2}
    pool = _plausible(pool, record)
    out: list[tuple[Any, dict[str, Any]]] = []
    if len(pool):
        out = _screen_and_refine(
            pattern, pool, round_opts, inst, clock, record, messages, note="widening round, time budget"
        )
    record.pop("generator", None)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    tried["widening"] = record
    return out


def _disorder_plan(composition: str | Composition | None, opts: SolveOptions) -> Any:
    """The disorder plan of a composition text that is non-stoichiometric or has a mixed group, else None."""
    from .disorder import DISORDER_MODES, disorder_plan

    if opts.disorder not in DISORDER_MODES:
        raise UsageError(f"--disorder must be one of {', '.join(DISORDER_MODES)}, got {opts.disorder!r}")
    if opts.supercells < 0 or opts.supercells == 1:
        raise UsageError(f"--supercells is a multiplicity ≥ 2 (or 0 for none), got {opts.supercells}")
    text = composition if isinstance(composition, str) else None
    plan = None
    if text is not None:
        fractional = any(abs(a - round(a)) > 1e-6 for a in parse_composition(text).values())
        if fractional or "(" in text:
            plan = disorder_plan(text)
    if plan is not None and plan.trivial:
        plan = None
    if plan is None and opts.disorder == "only":
        raise UsageError(
            "--disorder only needs a non-stoichiometric or mixed composition (e.g. Li0.6CoO2, Fe0.9O, "
            f"(Mn,Fe)3O4), got {composition!r}"
        )
    return plan


def _with_disorder(
    pattern: Any,
    candidates: list[Candidate],
    plan: Any,
    opts: SolveOptions,
    inst: Any,
    deadline: float | None,
    tried: dict[str, Any],
    messages: list[str],
) -> tuple[list[Candidate], list[tuple[str, Any]]]:
    """Add (mode "auto") or substitute (mode "only") disordered and supercell models, re-ranked by score;
    their refinements stop at ``deadline`` (a ``time.perf_counter()`` value; None: no limit).

    Also returns the order/disorder decisions as (folder name, OrderDecision) for Solution.write."""
    from .disorder import disorder_candidates

    record: dict[str, Any] = {"plan": plan.to_dict(), "mode": opts.disorder, "supercells": opts.supercells}
    tried["disorder"] = record
    if deadline is not None and time.perf_counter() >= deadline:
        messages.append("time budget: no time left for the disordered models")
        return ([] if opts.disorder == "only" else candidates), []
    t0 = time.perf_counter()
    new, records, notes = disorder_candidates(
        pattern, candidates, plan, opts.disorder, opts.supercells, instrument=inst, deadline=deadline
    )
    record["seconds"] = round(time.perf_counter() - t0, 2)
    messages.extend(notes)
    by_rank = {c.rank: c for c in candidates}
    for cand in new:
        cand.score = _score(cand.result)
    pool = new if opts.disorder == "only" else candidates + new
    pool.sort(key=lambda c: c.score)
    for n, cand in enumerate(pool):
        cand.rank = n + 1
    # parent ranks in the final ranking (None when "only" dropped the ordered parents)
    final_rank = {id(c): c.rank for c in pool}
    for cand in new:
        cand.provenance["parent_rank"] = final_rank.get(id(by_rank[cand.provenance["parent_rank"]]))
    decisions = []
    for rec in records:
        parent = by_rank[rec["parent_rank"]]
        rec["parent_rank"] = final_rank.get(id(parent))
        decision = rec.pop("_decision", None)
        if decision is not None:
            folder = f"order_parent{rec['parent_rank'] or parent.spacegroup.replace('/', '_')}"
            rec["outputs"] = folder
            decisions.append((folder, decision))
    record["models"] = records
    if opts.disorder == "only" and not pool:
        messages.append("--disorder only: no disordered model could be refined")
    return pool, decisions


def _compositions_from_elements(
    elements: Sequence[str],
    cells: Sequence[Any],
    options: SolveOptions,
    tried: dict[str, Any],
    messages: list[str],
) -> list[Composition]:
    """Cell contents proposed from allowed elements and the best indexed cell (volume + charge balance)."""
    if not cells:
        messages.append(
            "--elements needs an indexed cell to propose compositions from its volume, and indexing "
            "found none; give the composition with --composition"
        )
        return []
    volume = float(cells[0][0].volume)
    proposals = propose_compositions(elements, volume, limit=options.max_compositions)
    tried["compositions"] = {
        "elements": list(elements),
        "cell_volume": round(volume, 3),
        "proposed": [p.summary() for p in proposals],
    }
    if not proposals:
        messages.append(
            f"no charge-balanced composition of {', '.join(elements)} fills the indexed cell "
            f"({volume:.1f} Å³) within 25 %; give the composition with --composition"
        )
    return [p.formula for p in proposals]


def _load_instrument(instrument: Any) -> Any:
    if instrument is None or not isinstance(instrument, str | os.PathLike):
        return instrument
    from xrdsolve.conditioning.readers.gsas_instprm import read_instrument

    return read_instrument(instrument)


__all__ = ["SolveOptions", "XrdsolveError", "index_pattern", "solve"]
