"""Batched Rietveld refinement: phases + instrument + background on one pattern, staged least squares.

``refine(pattern, structures)`` refines one multiphase model; ``refine_candidates(pattern, structures)`` refines
many single-phase candidate models of the same pattern together in one tensor program (batch dimension = candidate).

The parameter vector of each candidate is laid out as::

    [zero, displacement, U, V, W, asym, background c_0..c_{K-1},
     for each phase: scale, X, Y, po_ratio, <symmetry-constrained phase parameters (refine.params)>]

Units: zero in degrees 2θ, displacement in μm, U V W in centideg², X Y in centideg (GSAS-II), B_iso in Å².
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure
from pymatgen.core.periodic_table import get_el_sp
from torch import Tensor

from .errors import RefineError, StructureError
from .lm import LMResult, levenberg_marquardt
from .params import PhaseParameterization, StackedPhases, parameterize, stack_parameterizations
from .physics import (
    CrystalBatch,
    Instrument,
    ProfileParams,
    bragg_intensities,
    chebyshev_background,
    generate_hkl,
    peak_shift,
    simulate,
    species_index,
)
from .physics.equivalents import merge_equivalent_reflections
from .protocols import PatternLike
from .radiation import Geometry, Probe, Radiation
from .rietveld_jacobian import model_jacobian

log = logging.getLogger(__name__)

GLOBAL_NAMES = ("zero", "displacement", "U", "V", "W", "asym")
PHASE_PROFILE_NAMES = ("scale", "X", "Y", "po_ratio")
HKL_MARGIN_DEG = 3.0
#: Start of the asymmetry SH/L when it is first refined (GSAS-II's default).
ASYM_START = 0.002
#: Peak FWHM (degrees 2θ) below which the lattice annealing schedules shrink in proportion: they were written
#: for lab patterns (GSAS-II's lab defaults, U 2, V −2, W 5 centideg², give 0.050° at every 2θ). A 0.8°
#: broadening of 0.01° synchrotron peaks merges every line and costs a 5,000-point window per reflection.
ANNEALING_REFERENCE_FWHM = 0.04


@dataclass(frozen=True)
class Stage:
    """One refinement stage: the parameter groups added (cumulatively) and an iteration cap."""

    name: str
    groups: tuple[str, ...]
    max_iter: int = 30


#: Parameter groups: scale, background, zero, displacement, lattice, profile (U V W X Y), asym, po, xyz, biso, occ.
DEFAULT_STRATEGY: tuple[Stage, ...] = (
    Stage("scale+background", ("scale", "background"), 20),
    Stage("+lattice+zero", ("lattice", "zero"), 30),
    Stage("+profile", ("profile", "displacement", "asym"), 30),
    Stage("+positions", ("xyz",), 30),
    Stage("+B_iso", ("biso",), 30),
    Stage("+occupancies", ("occ",), 30),
)


@dataclass
class RefineOptions:
    """Settings of a refinement. ``fix`` names parameters (``"zero"``, ``"Pb.B_iso"``, ``"phase0.X"`` or a
    group such as ``"displacement"``) held at their start values in every stage."""

    strategy: Sequence[Stage] = DEFAULT_STRATEGY
    n_background: int = 6
    two_theta_min: float | None = None
    two_theta_max: float | None = None
    fix: Iterable[str] = ()
    #: "analytic" (peak shapes rendered once, per-peak forward AD; refine.rietveld_jacobian), or an
    #: refine.lm.jacobian method: "batched", "forward", "central"
    jacobian: str = "analytic"
    max_jacobian_rows: int = 128
    refine_displacement: bool | None = None  # default: Bragg–Brentano only
    ftol: float = 1e-5
    #: hold one coordinate per polar axis (origin not defined by the space group, e.g. P6₃mc, Pna2₁, P1)
    fix_polar_origin: bool = True
    #: relative χ² change below which an intermediate stage stops (the last stage uses ``ftol``)
    stage_ftol: float = 1e-4
    #: extra Gaussian FWHM (degrees) schedule used the first time the lattice is refined (coarse to fine)
    lattice_annealing: Sequence[float] = (0.8, 0.4, 0.2)
    #: further annealing schedules, each a complete staged run from the same start; every candidate keeps the
    #: run with the lowest final χ² (escapes the local minima of pseudo-symmetric cells and overlapping peaks)
    annealing_restarts: Sequence[Sequence[float]] = ((1.6, 0.8, 0.4, 0.2),)
    #: candidates still above this goodness of fit (√(χ²/N)) after the runs above get one more staged run from the
    #: same start without annealing (broadened peaks can lead a pseudo-symmetric cell astray: Fe(OH)₂, a ≈ c,
    #: from a +0.3 % cell ends at GoF 4.8 annealed and 0.99 without); None: never
    rescue_gof: float | None = 2.0
    #: ``time.perf_counter()`` value after which no LM iteration starts and intermediate stages are skipped
    #: (the last stage still computes the esds at the parameters reached); None: no limit
    deadline: float | None = None
    #: X-ray anomalous dispersion f′ + i f″: None = on for X-rays (as GSAS-II), False = off (cheaper, e.g. for
    #: quick screening fits); ignored when an :class:`Instrument` is given (its own ``anomalous`` applies)
    anomalous: bool | None = None
    #: axial-divergence (FCJ) quadrature: "converged" or "gsas2" (GSAS-II's node rule, to compare like for like
    #: with GSAS-II); ignored when an :class:`Instrument` is given (its own ``fcj_quadrature`` applies)
    fcj_quadrature: str = "converged"
    #: compute R_Bragg per phase for the results (one calculated pattern per reflection: seconds for a large
    #: low-symmetry cell); False leaves it NaN, e.g. for quick screening fits ranked by Rwp alone
    r_bragg: bool = True
    #: compute esds and correlations (one more Jacobian after the last stage: seconds for a large batch);
    #: False leaves every esd NaN, e.g. for quick screening fits ranked by Rwp alone
    esds: bool = True


@dataclass
class _Layout:
    """Where each parameter lives in the flat per-candidate vector."""

    n_phases: int
    n_background: int
    phase_offsets: list[int]
    phase_sizes: list[int]
    total: int
    names: list[list[str]]  # (B) lists of P names ("" for padding)
    groups: list[list[str]]

    @property
    def bg_slice(self) -> slice:
        return slice(len(GLOBAL_NAMES), len(GLOBAL_NAMES) + self.n_background)

    def global_index(self, name: str) -> int:
        return GLOBAL_NAMES.index(name)

    def phase_profile_index(self, k: int, name: str) -> int:
        return self.phase_offsets[k] + PHASE_PROFILE_NAMES.index(name)

    def phase_param_slice(self, k: int) -> slice:
        start = self.phase_offsets[k] + len(PHASE_PROFILE_NAMES)
        return slice(start, start + self.phase_sizes[k])


_KIND_GROUP = {"lattice": "lattice", "xyz": "xyz", "occ": "occ", "biso": "biso"}


class RietveldModel:
    """Phases (B candidates each) + instrument + background on one pattern, as a batched residual function."""

    def __init__(
        self,
        pattern: PatternLike,
        phases: Sequence[Sequence[PhaseParameterization]],
        instrument: Instrument,
        options: RefineOptions,
    ) -> None:
        self.options = options
        self.instrument = instrument
        tt = np.asarray(pattern.two_theta, dtype=float)
        y = np.asarray(pattern.intensity, dtype=float)
        sig = None if pattern.sigma is None else np.asarray(pattern.sigma, dtype=float)
        if tt.ndim != 1 or tt.size != y.size:
            raise RefineError("pattern two_theta and intensity must be 1-D arrays of the same length")
        if not np.all(np.isfinite(tt)):
            raise RefineError("pattern has non-finite 2θ values")
        n_bad = int((~np.isfinite(y)).sum())
        if n_bad:
            raise RefineError(
                f"pattern has {n_bad} non-finite (NaN/inf) intensities; clean or crop the data first"
            )
        if sig is None:
            sig = np.sqrt(np.maximum(y, 1.0))
        lo = options.two_theta_min if options.two_theta_min is not None else -np.inf
        hi = options.two_theta_max if options.two_theta_max is not None else np.inf
        keep = (tt >= lo) & (tt <= hi)
        if keep.sum() < 10:
            raise RefineError(f"fewer than 10 pattern points between {lo} and {hi} degrees 2θ")
        tt, y, sig = tt[keep], y[keep], sig[keep]
        order = np.argsort(tt)
        tt, y, sig = tt[order], y[order], sig[order]
        if np.any(np.diff(tt) <= 0):
            uniq = np.concatenate([[True], np.diff(tt) > 0])
            tt, y, sig = tt[uniq], y[uniq], sig[uniq]
        valid = np.isfinite(sig) & (sig > 0)
        self.two_theta = torch.as_tensor(tt, dtype=torch.float64)
        self.obs = torch.as_tensor(y, dtype=torch.float64)
        self.sigma = torch.as_tensor(np.where(valid, sig, 1.0), dtype=torch.float64)
        self.weight_sqrt = torch.as_tensor(np.where(valid, 1.0 / np.where(valid, sig, 1.0), 0.0))
        self.n_obs = int(valid.sum())

        self.n_phases = len(phases)
        self.batch_size = len(phases[0])
        if any(len(p) != self.batch_size for p in phases):
            raise RefineError("every phase needs the same number of candidates")
        self.phases = [list(p) for p in phases]
        self.stacked: list[StackedPhases] = [stack_parameterizations(p) for p in self.phases]
        self.species: list[Tensor] = []
        for st in self.stacked:
            spec = torch.zeros(st.mask.shape, dtype=torch.long)
            for b, ph in enumerate(st.phases):
                spec[b, : ph.n_atoms] = torch.as_tensor([species_index(s) for s in ph.atom_species])
            self.species.append(spec)
        self.layout = self._make_layout()
        self.hkl: list[tuple[Tensor, Tensor]] = []
        self._row_cache: dict[tuple[int, int], tuple[Tensor, StackedPhases]] = {}
        #: extra Gaussian variance (centideg²) added to W while annealing the lattice (coarse to fine)
        self.extra_w = 0.0
        #: analytic Jacobians computed per configuration (paces refine.rietveld_jacobian's self-check)
        self.jacobian_calls: dict[tuple[Any, ...], int] = {}

    # ------------------------------------------------------------------------------------------ layout
    def _make_layout(self) -> _Layout:
        k_bg = self.options.n_background
        offsets, sizes = [], []
        pos = len(GLOBAL_NAMES) + k_bg
        for st in self.stacked:
            offsets.append(pos)
            sizes.append(int(st.values.shape[1]))
            pos += len(PHASE_PROFILE_NAMES) + sizes[-1]
        names: list[list[str]] = []
        groups: list[list[str]] = []
        gmap = {
            "zero": "zero",
            "displacement": "displacement",
            "U": "profile",
            "V": "profile",
            "W": "profile",
            "asym": "asym",
        }
        for b in range(self.batch_size):
            nb = list(GLOBAL_NAMES) + [f"background.{i}" for i in range(k_bg)]
            gb = [gmap[n] for n in GLOBAL_NAMES] + ["background"] * k_bg
            for k, st in enumerate(self.stacked):
                ph = st.phases[b]
                prefix = f"phase{k}." if self.n_phases > 1 else ""
                nb += [f"{prefix}{n}" for n in PHASE_PROFILE_NAMES]
                gb += ["scale", "profile", "profile", "po"]
                nb += [f"{prefix}{n}" for n in ph.names] + [""] * (sizes[k] - ph.n_params)
                gb += [_KIND_GROUP[kind] for kind in ph.kinds] + ["padding"] * (sizes[k] - ph.n_params)
            names.append(nb)
            groups.append(gb)
        return _Layout(self.n_phases, k_bg, offsets, sizes, pos, names, groups)

    # ------------------------------------------------------------------------------------------ physics
    def crystals(self, theta: Tensor, k: int, index: Tensor | None = None) -> CrystalBatch:
        """Crystals of phase k for theta (B',P); ``index`` (B',) maps rows to candidates (default: identity)."""
        st = self.stacked[k] if index is None else self._stacked_rows(k, index)
        th = theta[:, self.layout.phase_param_slice(k)]
        return CrystalBatch(
            lattice=st.lattice(th),
            frac=st.frac(th),
            species=self.species[k] if index is None else self.species[k][index],
            occ=st.occupancies(th),
            b_iso=st.b_iso(th),
            mask=st.mask,
        )

    def _stacked_rows(self, k: int, index: Tensor) -> StackedPhases:
        key = (k, index.shape[0])
        cached = self._row_cache.get(key)
        if cached is None or not torch.equal(cached[0], index):
            cached = (index.clone(), self.stacked[k].select(index))
            self._row_cache[key] = cached
        return cached[1]

    def profile(self, theta: Tensor, k: int, with_background: bool = False) -> ProfileParams:
        lay = self.layout
        g = {n: theta[:, lay.global_index(n)] for n in GLOBAL_NAMES}
        if self.extra_w:
            g["W"] = g["W"] + self.extra_w
        p = {n: theta[:, lay.phase_profile_index(k, n)] for n in PHASE_PROFILE_NAMES}
        bg = theta[:, lay.bg_slice] if with_background else theta.new_zeros(theta.shape[0], 0)
        return ProfileParams(
            scale=p["scale"],
            zero=g["zero"],
            displacement=g["displacement"],
            U=g["U"],
            V=g["V"],
            W=g["W"],
            X=p["X"],
            Y=p["Y"],
            asym=g["asym"],
            background=bg,
            po_ratio=p["po_ratio"],
        )

    @property
    def merges_equivalents(self) -> bool:
        """True when reflections are listed once per Laue orbit with their count (no strategy stage refines
        preferred orientation, which needs every equivalent's direction; see refine.physics.equivalents)."""
        return not any("po" in stage.groups for stage in self.options.strategy)

    def update_hkl(self, theta: Tensor) -> None:
        """(Re)generate reflections for the current lattices up to 2θ_max + margin (merged by symmetry unless
        preferred orientation is refined: every candidate keeps its space group, see refine.params)."""
        lam = min(self.instrument.radiation.wavelengths)
        tt_max = min(float(self.two_theta[-1]) + HKL_MARGIN_DEG, 179.0)
        d_min = lam / (2.0 * math.sin(math.radians(tt_max / 2.0)))
        self.hkl = []
        with torch.no_grad():
            for k in range(self.n_phases):
                lat = self.crystals(theta, k).lattice
                lat = torch.where(torch.isfinite(lat), lat, torch.eye(3, dtype=lat.dtype).expand_as(lat))
                hkl = generate_hkl(lat, d_min)
                if self.merges_equivalents:
                    rotations = [ph.symops_rot for ph in self.stacked[k].phases]
                    hkl = merge_equivalent_reflections(*hkl, rotations)
                self.hkl.append(hkl)

    def background(self, theta: Tensor) -> Tensor:
        return chebyshev_background(self.two_theta, theta[:, self.layout.bg_slice])

    def phase_patterns(self, theta: Tensor, index: Tensor | None = None) -> list[Tensor]:
        """Calculated pattern of each phase (B',M), without background."""
        out = []
        for k in range(self.n_phases):
            hkl = self.hkl[k] if index is None else (self.hkl[k][0][index], self.hkl[k][1][index])
            if not bool(hkl[1].any()):  # no reflection at all (e.g. a candidate outside the range)
                out.append(theta.new_zeros(theta.shape[0], self.two_theta.shape[0]))
                continue
            y = simulate(
                self.crystals(theta, k, index), self.two_theta, self.instrument, self.profile(theta, k), hkl
            )
            if not isinstance(y, Tensor):
                raise RefineError("simulate returned per-reflection data unexpectedly")
            out.append(y)
        return out

    def calculated(self, theta: Tensor, index: Tensor | None = None) -> Tensor:
        total = self.background(theta)
        for y in self.phase_patterns(theta, index):
            total = total + y
        return total

    def residuals(self, theta: Tensor, index: Tensor | None = None) -> Tensor:
        """Weighted residuals (obs − calc)/σ, (B',M); zero at excluded points. ``index`` maps rows to
        candidates when theta stacks repeated candidates (batched Jacobian)."""
        obs, ws = self.obs, self.weight_sqrt
        if obs.ndim == 2 and index is not None:
            obs, ws = obs[index], ws[index]
        return (obs - self.calculated(theta, index)) * ws

    def set_observations(self, intensity: np.ndarray, sigma: np.ndarray) -> None:
        """Per-candidate observations (B,M) on this model's 2θ grid (one pattern per candidate)."""
        y = torch.as_tensor(np.asarray(intensity, dtype=float))
        sig = torch.as_tensor(np.asarray(sigma, dtype=float))
        if y.shape != (self.batch_size, self.two_theta.shape[0]) or sig.shape != y.shape:
            raise RefineError(f"observations must be (B,M) = ({self.batch_size}, {self.two_theta.shape[0]})")
        if not bool(torch.isfinite(y).all()):
            raise RefineError("observations contain non-finite values")
        valid = torch.isfinite(sig) & (sig > 0)
        self.obs = y
        self.sigma = torch.where(valid, sig, torch.ones_like(sig))
        self.weight_sqrt = torch.where(valid, 1.0 / self.sigma, torch.zeros_like(sig))
        self.n_obs = int(valid.sum(dim=1).min())

    def observed_row(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(intensity, sigma, sqrt-weight) of candidate b."""
        if self.obs.ndim == 2:
            return self.obs[b].numpy(), self.sigma[b].numpy(), self.weight_sqrt[b].numpy()
        return self.obs.numpy(), self.sigma.numpy(), self.weight_sqrt.numpy()

    # ------------------------------------------------------------------------------------------ statistics
    def statistics(self, theta: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        """Rwp, Rp (fractions), χ² and the calculated pattern of each row of theta."""
        with torch.no_grad():
            calc = self.calculated(theta, index)
        w = self.weight_sqrt**2
        y = self.obs
        if y.ndim == 2 and index is not None:
            w, y = w[index], y[index]
        num = (w * (y - calc) ** 2).sum(dim=-1)
        den = (w * y * y).sum(dim=-1)
        rwp = (num / den).sqrt()
        valid = w > 0
        rp = ((y - calc).abs() * valid).sum(dim=-1) / (y.abs() * valid).sum(dim=-1)
        return {"rwp": rwp, "rp": rp, "chi2": num, "calc": calc}


# ---------------------------------------------------------------------------------------------- starting values
#: 2θ span (degrees) per Chebyshev background term in :func:`background_terms`, and the bounds on the count
BACKGROUND_DEGREES_PER_TERM = 6.0
BACKGROUND_TERMS_RANGE = (6, 16)


def background_terms(two_theta: np.ndarray) -> int:
    """Chebyshev background terms for an unattended refinement over ``two_theta`` (degrees): one per 6° of
    span, 6 to 16 (15 for 5–90°).

    Six terms leave an amorphous hump or a sample holder's broad scattering (σ 3–10° 2θ) in the residual:
    on simulated 5–90° patterns with such backgrounds the true structure refined to GoF 2.96 / 1.77 / 1.59 with
    6 terms and 1.04 / 1.00 / 1.05 with 14. The terms cluster towards the ends of the range (Chebyshev nodes),
    where 15 over 85° still resolve nothing narrower than about 1°, several times a peak's width; mid-range
    they follow a hump of σ 8° but not one of σ 5° (GoF 1.76 on rutile; 20 terms: 1.06).
    """
    tt = np.asarray(two_theta, dtype=float)
    span = float(tt.max() - tt.min()) if tt.size else 0.0
    lo, hi = BACKGROUND_TERMS_RANGE
    return int(np.clip(math.ceil(span / BACKGROUND_DEGREES_PER_TERM), lo, hi))


def estimate_fwhm(two_theta: np.ndarray, intensity: np.ndarray) -> float:
    """FWHM (degrees 2θ) of the strongest peak above a low-percentile background, from the data."""
    bg = np.percentile(intensity, 10)
    y = intensity - bg
    i = int(np.argmax(y))
    half = y[i] / 2.0
    left = i
    while left > 0 and y[left] > half:
        left -= 1
    right = i
    while right < y.size - 1 and y[right] > half:
        right += 1
    fwhm = float(two_theta[right] - two_theta[left])
    step = float(np.median(np.diff(two_theta)))
    return float(np.clip(fwhm, 2 * step, 2.0))


def _instrument_for(
    pattern: PatternLike,
    instrument: Instrument | Any | None,
    radiation: Radiation | str | float | None,
    anomalous: bool | None = None,
    fcj_quadrature: str = "converged",
) -> tuple[Instrument, dict[str, float]]:
    """An Instrument and starting profile values from an Instrument, an InstrumentParameters-like object
    (GSAS .prm/.instprm: radiation, polarization, zero, U..Y, SH_L) or the pattern alone."""
    start: dict[str, float] = {}
    rad = None if radiation is None else Radiation.parse(radiation)
    if isinstance(instrument, Instrument):
        return instrument, start
    geometry = Geometry.parse(pattern.geometry) if pattern.geometry is not None else Geometry.UNKNOWN
    polarisation = 0.5
    if instrument is not None:  # InstrumentParameters (refine.instrument) or anything alike
        rad = rad or instrument.radiation
        polarisation = float(getattr(instrument, "polarization", 0.5))
        for ours, theirs in (("zero", "zero"), ("U", "U"), ("V", "V"), ("W", "W"), ("X", "X"), ("Y", "Y")):
            if hasattr(instrument, theirs):
                start[ours] = float(getattr(instrument, theirs))
        if hasattr(instrument, "SH_L"):
            start["asym"] = float(instrument.SH_L)
    rad = rad or pattern.radiation
    if rad is None:
        raise RefineError("the pattern has no wavelength: give radiation= (e.g. 'CuKa' or 0.4137 Å)")
    if geometry is Geometry.UNKNOWN:
        geometry = Geometry.DEBYE_SCHERRER if rad.probe is Probe.NEUTRON else Geometry.BRAGG_BRENTANO
    if rad.probe is Probe.NEUTRON:
        polarisation = 0.5
    # X-ray: anomalous dispersion f′ + i f″ on unless told, as in GSAS-II (it changes |F|² by several % at Cu Kα
    # for Ca, La, Fe, …)
    on = rad.probe is not Probe.NEUTRON and anomalous is not False
    inst = Instrument(
        radiation=rad,
        geometry=geometry,
        polarisation=polarisation,
        anomalous=on,
        fcj_quadrature=fcj_quadrature,
    )
    return inst, start


def _as_structures(structures: Structure | Sequence[Structure]) -> list[Structure]:
    if isinstance(structures, Structure):
        return [structures]
    out = list(structures)
    if not out:
        raise StructureError("no structures given")
    return out


# ---------------------------------------------------------------------------------------------- engine
def _initial_theta(
    model: RietveldModel, start: Mapping[str, float], pattern_fwhm: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Starting vector, lower and upper bounds (B,P)."""
    lay = model.layout
    bsz = model.batch_size
    theta = torch.zeros(bsz, lay.total, dtype=torch.float64)
    lower = torch.full_like(theta, -math.inf)
    upper = torch.full_like(theta, math.inf)
    w_from_data = (pattern_fwhm * 100.0) ** 2 / (8.0 * math.log(2.0))
    defaults = {"zero": 0.0, "displacement": 0.0, "U": 0.0, "V": 0.0, "W": w_from_data, "asym": 0.0}
    for n in GLOBAL_NAMES:
        theta[:, lay.global_index(n)] = float(start.get(n, defaults[n]))
    i = lay.global_index
    lower[:, i("zero")], upper[:, i("zero")] = -1.0, 1.0
    lower[:, i("displacement")], upper[:, i("displacement")] = -2000.0, 2000.0
    lower[:, i("asym")], upper[:, i("asym")] = 0.0, 0.2
    # small positive floors keep the (clamped) Gaussian variance and Lorentzian width differentiable
    lower[:, i("W")] = 0.01
    for k in range(model.n_phases):
        st = model.stacked[k]
        sl = lay.phase_param_slice(k)
        theta[:, sl] = st.values
        for n, v, lo, hi in (
            ("scale", 1.0, 0.0, math.inf),
            ("X", max(start.get("X", 0.5), 0.05), 0.01, 500.0),
            ("Y", max(start.get("Y", 0.5), 0.05), 0.01, 500.0),
            ("po_ratio", 1.0, 0.2, 5.0),
        ):
            j = lay.phase_profile_index(k, n)
            theta[:, j], lower[:, j], upper[:, j] = v, lo, hi
        for b, ph in enumerate(st.phases):
            for idx, kind in enumerate(ph.kinds):
                j = sl.start + idx
                v0 = float(ph.values[idx])
                if kind == "xyz":
                    lower[b, j], upper[b, j] = v0 - 0.2, v0 + 0.2
                elif kind == "biso":
                    lower[b, j], upper[b, j] = -1.0, 30.0
                elif kind == "occ":
                    lower[b, j], upper[b, j] = 0.0, 1.0
                elif kind == "lattice" and ph.names[idx][-2] == ph.names[idx][-1]:  # diagonal G_ii
                    lower[b, j], upper[b, j] = 0.8 * v0, 1.25 * v0
    return theta, lower, upper


def _initial_scale(model: RietveldModel, theta: Tensor) -> Tensor:
    """Scale (and a constant background) from a linear least-squares fit of each candidate's unit-scale pattern."""
    y = model.obs
    w = model.weight_sqrt**2
    bg0 = torch.quantile(y, 0.1, dim=-1, keepdim=True)
    with torch.no_grad():
        pats = model.phase_patterns(theta)
    total = sum(pats)
    assert isinstance(total, Tensor)
    num = (w * (y - bg0) * total).sum(dim=1)
    bg0 = bg0.flatten().expand(model.batch_size)
    den = (w * total * total).sum(dim=1).clamp_min(1e-300)
    s = (num / den).clamp_min(1e-12)
    theta = theta.clone()
    for k in range(model.n_phases):
        theta[:, model.layout.phase_profile_index(k, "scale")] *= s
    if model.layout.n_background:
        theta[:, model.layout.bg_slice.start] = bg0
    return theta


def polar_directions(phase: PhaseParameterization, tol: float = 1e-6) -> np.ndarray:
    """(3,k) fractional directions along which the origin is not fixed by the space group (polar axes).

    The null space of R − I over every rotation R of the group: k = 0 for non-polar groups, 1 for e.g.
    P6₃mc or Pna2₁ (c), 2 for Cm/Pc (in the mirror plane), 3 for P1.
    """
    rots = np.asarray(phase.symops_rot, dtype=float).reshape(-1, 3, 3)
    stacked = (rots - np.eye(3)[None]).reshape(-1, 3)
    _, sv, vt = np.linalg.svd(stacked)
    rank = int((sv > tol).sum())
    return vt[rank:].T


def polar_fixed_parameters(phase: PhaseParameterization) -> list[int]:
    """Indices (into the phase's parameter vector) of one free coordinate per polar direction to hold fixed.

    A shift of the whole structure by v along a polar direction changes every site's free parameters by
    v[pivots] without changing the pattern, so the normal matrix is singular; holding one coordinate per
    direction (of the heaviest site that can absorb the shift) fixes the origin.
    """
    dirs = polar_directions(phase)
    k = dirs.shape[1]
    if k == 0:
        return []
    xyz_idx = phase.block("xyz")
    rows: list[
        tuple[float, int, np.ndarray]
    ] = []  # (−Z, parameter index, shift of that parameter per direction)
    pos = 0
    for site in phase.sites:
        n = site.n_free_xyz
        z = max((_atomic_number(sp) for sp in site.species), default=0)
        for j, piv in enumerate(site.pivots):
            rows.append((-float(z), int(xyz_idx[pos + j]), dirs[piv]))
        pos += n
    rows.sort(key=lambda r: r[0])  # heaviest sites first (stable: input order within a species)
    chosen: list[int] = []
    basis = np.zeros((0, k))
    for _, idx, vec in rows:
        trial = np.vstack([basis, vec])
        if np.linalg.matrix_rank(trial, tol=1e-6) > basis.shape[0]:
            basis = trial
            chosen.append(idx)
            if len(chosen) == k:
                break
    return chosen


def _atomic_number(species: str) -> int:
    try:
        return int(get_el_sp(species).Z)
    except (ValueError, KeyError, AttributeError):
        return 0


def _polar_mask(model: RietveldModel) -> Tensor:
    """(B,P) True at the coordinates held fixed to pin the origin of polar space groups."""
    mask = torch.zeros(model.batch_size, model.layout.total, dtype=torch.bool)
    for k in range(model.n_phases):
        start = model.layout.phase_param_slice(k).start
        for b, ph in enumerate(model.stacked[k].phases):
            for idx in polar_fixed_parameters(ph):
                mask[b, start + idx] = True
    return mask


def _free_mask(model: RietveldModel, groups: set[str], fixed: set[str]) -> Tensor:
    lay = model.layout
    free = torch.zeros(model.batch_size, lay.total, dtype=torch.bool)
    for b in range(model.batch_size):
        for j, (n, g) in enumerate(zip(lay.names[b], lay.groups[b], strict=True)):
            if g == "padding" or not n:
                continue
            if g in groups and n not in fixed and g not in fixed:
                free[b, j] = True
    return free


def _run(
    model: RietveldModel,
    options: RefineOptions,
    start: Mapping[str, float],
) -> tuple[Tensor, LMResult | None, list[list[Any]], Tensor]:
    """Staged refinement of every candidate; returns theta, last LM result, per-candidate stage logs, dead mask.

    The staged strategy runs once with ``options.lattice_annealing`` and once more from the same start for every
    schedule in ``options.annealing_restarts`` (while the deadline allows); each candidate keeps the run that
    ends with the lowest χ² (its stage log says which)."""
    y = model.observed_row(0)[0]
    fwhm = estimate_fwhm(model.two_theta.numpy(), y) if "W" not in start else 0.1
    theta0, lower, upper = _initial_theta(model, start, fwhm)
    model.update_hkl(theta0)
    theta0 = _initial_scale(model, theta0)
    fixed = set(options.fix)
    refine_disp = options.refine_displacement
    if refine_disp is None:
        refine_disp = model.instrument.geometry is Geometry.BRAGG_BRENTANO
    if not refine_disp:
        fixed.add("displacement")
    polar = (
        _polar_mask(model)
        if options.fix_polar_origin
        else torch.zeros(model.batch_size, model.layout.total, dtype=torch.bool)
    )
    # stages that free nothing new are skipped; the last effective one also computes the covariance
    stages: list[tuple[Stage, set[str]]] = []
    groups: set[str] = set()
    prev = torch.zeros(model.batch_size, model.layout.total, dtype=torch.bool)
    for stage in options.strategy:
        groups |= set(stage.groups)
        mask = _free_mask(model, groups, fixed) & ~polar
        if bool((mask & ~prev).any()):
            stages.append((stage, set(groups)))
        prev = mask
    bounds = (lower, upper)
    best = _staged(model, options, theta0, bounds, stages, fixed, polar, options.lattice_annealing, "")
    for schedule in options.annealing_restarts:
        if options.deadline is not None and time.perf_counter() > options.deadline:
            log.info("deadline passed: annealing restart %s skipped", tuple(schedule))
            break
        label = " [annealing " + ", ".join(f"{x:g}" for x in schedule) + "°]"
        other = _staged(model, options, theta0, bounds, stages, fixed, polar, schedule, label)
        best = _keep_lower_chi2(best, other)
    if options.rescue_gof is not None and options.lattice_annealing:
        poor = best[1] > options.rescue_gof**2 * model.n_obs  # χ²/N: GoF² without the free-parameter count
        in_time = options.deadline is None or time.perf_counter() < options.deadline
        if bool(poor.any()) and in_time:
            n_poor, limit = int(poor.sum()), options.rescue_gof
            log.info("%d candidate(s) above GoF %g: one more run without annealing", n_poor, limit)
            label = " [no annealing]"
            other = _staged(model, options, theta0, bounds, stages, fixed, polar, (), label, only=poor)
            best = _keep_lower_chi2(best, other)
    outcome = best[0]
    model.update_hkl(outcome[0])
    return outcome


def _final_chi2(model: RietveldModel, theta: Tensor, dead: Tensor) -> Tensor:
    """(B,) χ² at ``theta``; +inf for diverged candidates and non-finite values."""
    with torch.no_grad():
        model.update_hkl(theta)
        chi2 = model.statistics(theta)["chi2"]
    return torch.where(dead | ~torch.isfinite(chi2), torch.full_like(chi2, math.inf), chi2)


_RunOutcome = tuple[Tensor, LMResult | None, list[list[Any]], Tensor]


def _keep_lower_chi2(
    a: tuple[_RunOutcome, Tensor], b: tuple[_RunOutcome, Tensor]
) -> tuple[_RunOutcome, Tensor]:
    """Per candidate, the run (theta, last LM result, logs, dead) with the lower final χ²."""
    (ta, la, loga, deada), chia = a
    (tb, lb, logb, deadb), chib = b
    take = chib < chia
    if not bool(take.any()):
        return a
    theta = torch.where(take[:, None], tb, ta)
    dead = torch.where(take, deadb, deada)
    logs = [logb[i] if bool(take[i]) else loga[i] for i in range(len(loga))]
    last = la if lb is None else lb if la is None else _merge_lm(la, lb, take)
    return (theta, last, logs, dead), torch.where(take, chib, chia)


def _unless_annealing_lost(
    model: RietveldModel,
    res: LMResult,
    stage_start: Tensor,
    stage_chi2: Tensor,
    free: Tensor,
    stage_lm: Callable[..., LMResult],
) -> LMResult:
    """The lattice stage's result ``res``, except for candidates that the annealing schedule led to a minimum
    worse than the stage started from (χ² above ``stage_chi2``; measured: Fe(OH)₂, P2₁/m, Rwp 36 → 38 % with
    the cell 24–31 esd off, where a plain fit reaches the truth at GoF 0.99): those run the stage again
    (``stage_lm(theta, free=...)``) from ``stage_start`` without broadening and keep the end with the lower χ².
    """
    worse = (res.chi2 > stage_chi2) & ~res.diverged & free.any(dim=1)
    if not bool(worse.any()):
        return res
    log.info(
        "annealing ended above the stage start for %d candidate(s): stage rerun unbroadened", int(worse.sum())
    )
    retry = torch.where(worse[:, None], stage_start, res.theta)
    model.update_hkl(retry)
    again = stage_lm(retry, free=free & worse[:, None])
    take = worse & (again.chi2 < res.chi2) & ~again.diverged
    merged = _merge_lm(res, again, take)
    model.update_hkl(merged.theta)
    return merged


def _merge_lm(a: LMResult, b: LMResult, take: Tensor) -> LMResult:
    """Row-wise merge of two LM results of the same batch: rows where ``take`` come from ``b``."""
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, Tensor):
            t = take.reshape((-1,) + (1,) * (va.dim() - 1))
            merged[f.name] = torch.where(t, vb, va)
        else:
            merged[f.name] = va or vb
    return LMResult(**merged)


def annealing_scale(model: RietveldModel, theta: Tensor) -> float:
    """Factor (≤ 1) on the lattice annealing schedule: the candidates' median peak FWHM at the pattern's
    middle 2θ over :data:`ANNEALING_REFERENCE_FWHM`, capped at 1 (broader patterns keep the schedule)."""
    from .physics.profile import tch_widths

    prof = model.profile(theta, 0)
    middle = torch.deg2rad(model.two_theta[model.two_theta.shape[0] // 2] / 2.0)
    fwhm, _ = tch_widths(middle, prof.U, prof.V, prof.W, prof.X, prof.Y)
    return min(1.0, float(fwhm.median()) / ANNEALING_REFERENCE_FWHM)


def _staged(
    model: RietveldModel,
    options: RefineOptions,
    theta0: Tensor,
    bounds: tuple[Tensor, Tensor],
    stages: Sequence[tuple[Stage, set[str]]],
    fixed: set[str],
    polar: Tensor,
    annealing: Sequence[float],
    label: str,
    only: Tensor | None = None,
) -> tuple[_RunOutcome, Tensor]:
    """One pass of the staged strategy from ``theta0`` with the lattice annealing schedule ``annealing``
    (extra Gaussian FWHM, degrees); returns (theta, last LM result, logs, dead) and the final χ² per candidate.
    With ``only`` (B,) bool the other candidates are not refined (returned as dead, χ² inf)."""
    from .results import StageLog

    lower, upper = bounds
    theta = theta0.clone()
    model.update_hkl(theta)
    bsz = model.batch_size
    dead = torch.zeros(bsz, dtype=torch.bool) if only is None else ~only
    logs: list[list[StageLog]] = [[] for _ in range(bsz)]
    stats = model.statistics(theta)
    for b in range(bsz):
        logs[b].append(
            StageLog("start" + label, (), float(stats["rwp"][b]), float(stats["chi2"][b]), 0, True, "start")
        )
    jac_fn = None
    if options.jacobian == "analytic":
        jac_fn = functools.partial(model_jacobian, model, max_rows=options.max_jacobian_rows, compact=True)
    lm_common: dict[str, Any] = {
        "lower": lower,
        "upper": upper,
        "jacobian_method": options.jacobian,
        "max_jacobian_rows": options.max_jacobian_rows,
        "jacobian_fn": jac_fn,
        "residual_takes_index": True,
        "deadline": options.deadline,
    }
    # seconds per LM iteration measured so far in this pass (and the free columns of that iteration): a stage
    # or LM call starting near the deadline is judged by it (an iteration of a large batch takes seconds)
    pace, pace_columns = 0.0, 1

    def timed_lm(residual_fn: Any, theta0: Tensor, final: bool = False, **kwargs: Any) -> LMResult:
        nonlocal pace, pace_columns
        # before the final stage, room is kept for its closing Jacobian (the esds, over every free column)
        deadline = options.deadline if options.deadline is None or final else options.deadline - 1.5 * pace
        free_now = kwargs.get("free")
        columns = theta0.shape[1] if free_now is None else max(1, int(free_now.any(dim=0).sum()))
        # an iteration's Jacobian, and the closing one, cost about the same per free column (positions of a large
        # cell: seconds for the final stage when the lattice stage took a fraction of one)
        expected = pace * max(1.0, columns / pace_columns)
        settings: dict[str, Any] = {
            **lm_common,
            **kwargs,
            "deadline": deadline,
            "iteration_seconds": expected,
            "closing_seconds": expected if final and pace > 0 else None,
        }
        out = levenberg_marquardt(residual_fn, theta0, **settings)
        if out.iteration_seconds > pace:
            pace, pace_columns = out.iteration_seconds, columns
        return out

    last: LMResult | None = None
    for si, (stage, groups) in enumerate(stages):
        free = _free_mask(model, groups, fixed) & ~dead[:, None] & ~polar
        if not bool(free.any()):
            continue
        final = si == len(stages) - 1
        if not final and options.deadline is not None and time.perf_counter() + 2.5 * pace > options.deadline:
            log.info("deadline (nearly) passed: stage %s skipped", stage.name)
            continue
        annealed = "lattice" in stage.groups and bool(annealing)
        if annealed:  # where the stage starts, should the annealing end above it (_unless_annealing_lost)
            stage_start, stage_chi2 = theta.clone(), stats["chi2"]
        if "asym" in stage.groups:
            # at exactly 0 the symmetric profile has no asym derivative to follow: start just above it
            # (only now: an asymmetric profile costs several times more to compute in earlier stages)
            ia = model.layout.global_index("asym")
            theta[:, ia] = torch.where(free[:, ia], theta[:, ia].clamp(min=ASYM_START), theta[:, ia])
        if "profile" in stage.groups:
            # widths first (W, X, Y), then the angle dependence (U, V): avoids negative-variance traps
            uv = [model.layout.global_index("U"), model.layout.global_index("V")]
            pre_free = free.clone()
            pre_free[:, uv] = False
            pre = timed_lm(model.residuals, theta, free=pre_free, max_iter=15, ftol=1e-3, covariance=False)
            theta = torch.where((dead | pre.diverged)[:, None], theta, pre.theta)
        if annealed:
            inst_full = model.instrument
            # broadened peaks need only a short window (the Gaussian dominates); keeps the cost down
            model.instrument = dataclasses.replace(inst_full, window_fwhm=min(inst_full.window_fwhm, 6.0))
            sharpness = annealing_scale(model, theta)
            for extra in annealing:
                model.extra_w = (extra * sharpness * 100.0) ** 2 / (8.0 * math.log(2.0))
                model.update_hkl(theta)
                pre = timed_lm(model.residuals, theta, free=free, max_iter=10, ftol=1e-3, covariance=False)
                theta = torch.where((dead | pre.diverged)[:, None], theta, pre.theta)
            model.extra_w = 0.0
            model.instrument = inst_full
        model.update_hkl(theta)
        stage_lm = functools.partial(
            timed_lm,
            model.residuals,
            n_obs=torch.full((bsz,), model.n_obs, dtype=torch.long),
            max_iter=stage.max_iter,
            ftol=options.ftol if final else options.stage_ftol,
            covariance=final and options.esds,
            final=final,
        )
        res = stage_lm(theta, free=free)
        if annealed:
            res = _unless_annealing_lost(model, res, stage_start, stage_chi2, free & ~dead[:, None], stage_lm)
        theta = torch.where(dead[:, None], theta, res.theta)
        dead |= res.diverged
        stats = model.statistics(theta)
        for b in range(bsz):
            logs[b].append(
                StageLog(
                    stage.name + label,
                    tuple(stage.groups),
                    float(stats["rwp"][b]),
                    float(stats["chi2"][b]),
                    int(res.iterations[b]),
                    bool(res.converged[b]),
                    res.status(b),
                )
            )
        log.info("stage %s%s: Rwp %s", stage.name, label, np.round(stats["rwp"].numpy() * 100, 3))
        last = res
    return (theta, last, logs, dead), _final_chi2(model, theta, dead)


def refine(
    pattern: PatternLike,
    structures: Structure | Sequence[Structure],
    *,
    instrument: Instrument | Any | None = None,
    radiation: Radiation | str | float | None = None,
    options: RefineOptions | None = None,
    names: Sequence[str] | None = None,
    refine_occupancy: Sequence[str] | None = None,
    mix: Mapping[str, Sequence[str]] | None = None,
    exchange: Sequence[Sequence[str]] | None = None,
    composition_restraint: tuple[str, float] | None = None,
) -> Any:
    """Rietveld refinement of one model (one or more phases) against ``pattern``.

    ``instrument``: an :class:`Instrument`, an ``InstrumentParameters`` from a GSAS .prm/.instprm file
    (starting U V W X Y, zero, SH/L, polarisation, wavelengths), or None (profile estimated from the data).
    Occupancy model (sites by CIF label, see :mod:`~xrdsolve.refine.disorder`): ``refine_occupancy`` (vacancies),
    ``mix`` {site: species} (fractions keep the site total), ``exchange`` [(A, B)] anti-site pairs,
    ``composition_restraint`` (formula, weight = 1/σ per atom fraction).
    Returns a :class:`~xrdsolve.refine.results.RefinementResult`. Raises RefineError/StructureError for a
    structure without atoms, a phase without reflections in range, or non-finite data.
    """
    from .results import build_result

    if refine_occupancy or mix or exchange or composition_restraint:
        from .disorder import OccupancyModel, refine_disordered

        occ = OccupancyModel.build(refine_occupancy, mix, exchange, composition_restraint)
        return refine_disordered(
            pattern, structures, occ, instrument=instrument, radiation=radiation, options=options, names=names
        )
    t0 = time.perf_counter()
    opts = options or RefineOptions()
    structs = _as_structures(structures)
    inst, start = _instrument_for(pattern, instrument, radiation, opts.anomalous, opts.fcj_quadrature)
    phases = []
    for i, s in enumerate(structs):
        if len(s) == 0:
            raise StructureError(f"phase {i} has no atoms")
        phases.append([parameterize(s, name=None if names is None else names[i])])
    model = RietveldModel(pattern, phases, inst, opts)
    _check_reflections_in_range(model, raise_error=True)
    theta, last, logs, dead = _run(model, opts, start)
    return build_result(model, theta, last, logs[0], bool(dead[0]), 0, time.perf_counter() - t0)


def refine_candidates(
    pattern: PatternLike,
    structures: Sequence[Structure],
    *,
    instrument: Instrument | Any | None = None,
    radiation: Radiation | str | float | None = None,
    options: RefineOptions | None = None,
) -> list[Any]:
    """Refine many single-phase candidate structures against one pattern together (batched).

    Returns one RefinementResult per candidate, in input order. A candidate that diverges, has no reflections
    in range or has a singular normal matrix is flagged (``converged`` False, ``status``) without affecting
    the others.
    """
    from .results import build_result

    t0 = time.perf_counter()
    opts = options or RefineOptions()
    structs = _as_structures(structures)
    inst, start = _instrument_for(pattern, instrument, radiation, opts.anomalous, opts.fcj_quadrature)
    params = []
    for i, s in enumerate(structs):
        if len(s) == 0:
            raise StructureError(f"candidate {i} has no atoms")
        params.append(parameterize(s))
    model = RietveldModel(pattern, [params], inst, opts)
    no_refl = _check_reflections_in_range(model, raise_error=False)
    theta, last, logs, dead = _run(model, opts, start)
    elapsed = time.perf_counter() - t0
    out = []
    for b in range(model.batch_size):
        r = build_result(model, theta, last, logs[b], bool(dead[b]), b, elapsed / model.batch_size)
        if bool(no_refl[b]):
            r.converged = False
            r.status = "no_reflections_in_range"
        out.append(r)
    return out


def _check_reflections_in_range(model: RietveldModel, raise_error: bool) -> Tensor:
    """(B,) True where some phase has no reflection inside the pattern's 2θ range."""
    bsz = model.batch_size
    theta = torch.zeros(bsz, model.layout.total, dtype=torch.float64)
    for k in range(model.n_phases):
        theta[:, model.layout.phase_param_slice(k)] = model.stacked[k].values
        theta[:, model.layout.phase_profile_index(k, "scale")] = 1.0
        theta[:, model.layout.phase_profile_index(k, "po_ratio")] = 1.0
    model.update_hkl(theta)
    lo, hi = float(model.two_theta[0]), float(model.two_theta[-1])
    bad = torch.zeros(bsz, dtype=torch.bool)
    for k in range(model.n_phases):
        with torch.no_grad():
            refl = bragg_intensities(model.crystals(theta, k), model.instrument, None, model.hkl[k], hi)
        tt = refl.two_theta
        inside = refl.valid & (tt >= lo) & (tt <= hi)
        none = ~inside.flatten(1).any(dim=1)
        if raise_error and bool(none.any()):
            name = model.stacked[k].phases[0].name
            raise RefineError(f"phase {name} has no reflections between {lo:.3f} and {hi:.3f} degrees 2θ")
        bad |= none
    return bad


__all__ = [
    "DEFAULT_STRATEGY",
    "PatternLike",
    "RefineOptions",
    "RietveldModel",
    "Stage",
    "background_terms",
    "estimate_fwhm",
    "field",
    "peak_shift",
    "refine",
    "refine_candidates",
]
