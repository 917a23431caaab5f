"""Randomised synthetic occupancy trials (issue 8): LiNiO2 with Li/Ni anti-sites on Cu Kα and the
(Fe0.5Mn0.5)3O4 spinel with a random cation distribution on neutrons (Mn b < 0; Fe/Mn X-ray contrast is too weak,
see test_disorder_acceptance). Patterns carry Poisson noise, a random background, zero shift, sample
displacement and random profile widths; starting models are ordered with a perturbed cell.

``python tests/disorder_trials.py linio2|spinel N`` prints the measured fractions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.bench import simulate_pattern
from xrdsolve.refine.disorder import OccupancyModel, refine_disordered_batch
from xrdsolve.refine.physics import Instrument
from xrdsolve.refine.rietveld import RefineOptions


@dataclass
class TrialOutcome:
    """Per-trial refined occupancy vs truth: |error| < tol and |error| < 3 esd."""

    truth: np.ndarray  # (T, K)
    value: np.ndarray
    esd: np.ndarray

    @property
    def within_tol(self) -> np.ndarray:
        return np.all(np.abs(self.value - self.truth) < 0.03, axis=1)

    @property
    def within_3esd(self) -> np.ndarray:
        return np.all(np.abs(self.value - self.truth) <= 3.0 * self.esd, axis=1)

    def summary(self) -> dict[str, float]:
        err = np.abs(self.value - self.truth)
        return {
            "n": float(len(self.truth)),
            "frac_within_0.03": float(self.within_tol.mean()),
            "frac_truth_within_3esd": float(self.within_3esd.mean()),
            "frac_both": float((self.within_tol & self.within_3esd).mean()),
            "median_abs_error": float(np.median(err)),
            "median_esd": float(np.median(self.esd)),
        }


def linio2(
    x: float, a: float = 2.878, c: float = 14.19, z_o: float = 0.2578, b: tuple = (1.0, 0.4, 0.6)
) -> Structure:
    """LiNiO2 (R-3m, hexagonal setting) with an anti-site fraction x: Li1 = Li(1−x)Ni(x), Ni1 = Ni(1−x)Li(x)."""
    s = Structure.from_spacegroup(
        "R-3m",
        Lattice.hexagonal(a, c),
        [{"Li": 1 - x, "Ni": x} if x else "Li", {"Ni": 1 - x, "Li": x} if x else "Ni", "O"],
        [[0, 0, 0.5], [0, 0, 0], [0, 0, z_o]],
        labels=["Li1", "Ni1", "O1"],
    )
    bmap = {"Li1": b[0], "Ni1": b[1], "O1": b[2]}
    s.add_site_property("b_iso", [bmap[site.label] for site in s])
    return s


def spinel(
    fe_a: float, fe_b: float, a: float = 8.45, x_o: float = 0.3865, b: tuple = (0.5, 0.5, 0.7)
) -> Structure:
    """(Fe,Mn)3O4 spinel (Fd-3m origin 1, primitive cell): A1 8a = Fe(fe_a)Mn, B1 16d = Fe(fe_b)Mn, O1 32e."""

    def occ(f: float) -> dict[str, float] | str:
        return "Fe" if f >= 1 else ({"Mn": 1.0} if f <= 0 else {"Fe": f, "Mn": 1 - f})

    s = Structure.from_spacegroup(
        "Fd-3m",
        Lattice.cubic(a),
        [occ(fe_a), occ(fe_b), "O"],
        [[0, 0, 0], [0.625, 0.625, 0.625], [x_o, x_o, x_o]],
        labels=["A1", "B1", "O1"],
    )
    s = s.get_primitive_structure()
    bmap = {"A1": b[0], "B1": b[1], "O1": b[2]}
    s.add_site_property("b_iso", [bmap[site.label] for site in s])
    return s


def site_occupancy(result: Any, label: str, species: str) -> Any:
    """The refined occupancy Value of ``species`` on site ``label`` of the first phase."""
    for site in result.phases[0].sites:
        if site.label == label:
            return site.occupancy[species]
    raise KeyError(label)


def _instrument_effects(rng: np.random.Generator, bragg_brentano: bool) -> dict[str, float]:
    prof = {
        "U": float(rng.uniform(1.0, 4.0)),
        "V": float(rng.uniform(-3.0, -1.0)),
        "W": float(rng.uniform(3.0, 8.0)),
        "X": float(rng.uniform(0.5, 2.0)),
        "Y": float(rng.uniform(1.0, 3.0)),
        "zero": float(rng.uniform(-0.03, 0.03)),
    }
    if bragg_brentano:
        prof["displacement"] = float(rng.uniform(-30.0, 30.0))
    return prof


def run_linio2(n: int, seed: int = 0, two_theta_max: float = 120.0) -> TrialOutcome:
    """n randomised LiNiO2 trials (anti-site 3–7 %), Cu Kα Bragg–Brentano, exchange Li1/Ni1 refined."""
    rng = np.random.default_rng(seed)
    inst = Instrument.lab("CuKa")
    grid = np.arange(15.0, two_theta_max, 0.02)
    truths, pats, starts = [], [], []
    for i in range(n):
        x = float(rng.uniform(0.03, 0.07))
        a, c = 2.878 * (1 + rng.uniform(-0.003, 0.003)), 14.19 * (1 + rng.uniform(-0.003, 0.003))
        b = (float(rng.uniform(0.5, 1.5)), float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.4, 1.0)))
        truth = linio2(x, a, c, 0.2578 + rng.uniform(-0.002, 0.002), b)
        bg = (float(rng.uniform(100, 400)), float(rng.uniform(-50, 0)), float(rng.uniform(0, 20)))
        pats.append(
            simulate_pattern(
                truth,
                grid,
                inst,
                _instrument_effects(rng, True),
                bg,
                float(rng.uniform(1e4, 4e4)),
                seed=seed * 1000 + i,
            )
        )
        starts.append(linio2(0.0, a * (1 + rng.uniform(-0.002, 0.002)), c * (1 + rng.uniform(-0.002, 0.002))))
        truths.append([x])
    res = refine_disordered_batch(
        pats,
        starts,
        OccupancyModel.build(exchange=[("Li1", "Ni1")]),
        instrument=inst,
        options=RefineOptions(n_background=4),
    )
    val = np.asarray([[site_occupancy(r, "Li1", "Ni").value] for r in res])
    esd = np.asarray([[site_occupancy(r, "Li1", "Ni").esd] for r in res])
    return TrialOutcome(np.asarray(truths), val, esd)


def run_spinel(n: int, seed: int = 0, two_theta_max: float = 150.0) -> TrialOutcome:
    """n randomised (Fe0.5Mn0.5)3O4 trials (Fe on A in 0.2–0.8, B fixed by the composition), neutrons 1.594 Å."""
    rng = np.random.default_rng(seed)
    inst = Instrument(radiation="neutron:1.594", geometry="debye-scherrer")
    grid = np.arange(10.0, two_theta_max, 0.05)
    truths, pats, starts = [], [], []
    for i in range(n):
        fa = float(rng.uniform(0.2, 0.8))
        fb = 0.75 - 0.5 * fa  # (8 fa + 16 fb) / 24 = 0.5
        a = 8.45 * (1 + rng.uniform(-0.003, 0.003))
        b = (float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.5, 1.2)))
        truth = spinel(fa, fb, a, 0.3865 + rng.uniform(-0.003, 0.003), b)
        bg = (float(rng.uniform(100, 400)), float(rng.uniform(-50, 0)), float(rng.uniform(0, 20)))
        pats.append(
            simulate_pattern(
                truth,
                grid,
                inst,
                _instrument_effects(rng, False),
                bg,
                float(rng.uniform(1e4, 4e4)),
                seed=seed * 1000 + i,
            )
        )
        starts.append(spinel(1.0, 1.0, a * (1 + rng.uniform(-0.002, 0.002))))
        truths.append([fa, fb])
    occ = OccupancyModel.build(mix={"A1": ["Fe", "Mn"], "B1": ["Fe", "Mn"]})
    res = refine_disordered_batch(pats, starts, occ, instrument=inst, options=RefineOptions(n_background=4))
    val = np.asarray([[site_occupancy(r, lab, "Fe").value for lab in ("A1", "B1")] for r in res])
    esd = np.asarray([[site_occupancy(r, lab, "Fe").esd for lab in ("A1", "B1")] for r in res])
    return TrialOutcome(np.asarray(truths), val, esd)


# ------------------------------------------------------------------------------------------ order / disorder
def la_nbo3_parent(a: float = 3.91, b: tuple = (0.6, 0.3, 0.8)) -> Structure:
    """Cubic perovskite parent LaNbO3 (Pm-3m): La1 1b, Nb1 1a, O1 3d; the defect site is La1."""
    s = Structure.from_spacegroup(
        "Pm-3m",
        Lattice.cubic(a),
        ["La", "Nb", "O"],
        [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]],
        labels=["La1", "Nb1", "O1"],
    )
    bmap = {"La1": b[0], "Nb1": b[1], "O1": b[2]}
    s.add_site_property("b_iso", [bmap[site.label] for site in s])
    return s


def la05_layered(a: float, c_ratio: float, dz: float, b: tuple) -> Structure:
    """La0.5NbO3 with La vacancies ordered in alternate (001) layers: P4/mmm, 1×1×2 (multiplicity 2); apical O
    displaced by dz (fraction of c) towards the vacant layer."""
    c = 2 * a * c_ratio
    s = Structure(
        Lattice.tetragonal(a, c),
        ["La", "Nb", "Nb", "O", "O", "O", "O", "O", "O"],
        [
            [0.5, 0.5, 0.25],
            [0, 0, 0],
            [0, 0, 0.5],
            [0.5, 0, 0],
            [0, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            [0, 0, 0.25 + dz],
            [0, 0, 0.75 - dz],
        ],
        labels=["La1", "Nb1", "Nb2", "O1", "O1", "O2", "O2", "O3", "O3"],
    )
    s.add_site_property("b_iso", [b[0], b[1], b[1]] + [b[2]] * 6)
    return s


def run_order_trials(
    n: int, ordered: bool, seed: int = 0, max_mult: int = 2, two_theta_max: float = 100.0
) -> list[Any]:
    """n randomised La0.5NbO3 patterns (vacancy-ordered 1×1×2 if ``ordered`` else the disordered average),
    Cu Kα with noise and instrument effects, each judged by compare_order_disorder. Returns the decisions."""
    from xrdsolve.refine.supercells import compare_order_disorder, disordered_average

    rng = np.random.default_rng(seed + (1000 if ordered else 0))
    inst = Instrument.lab("CuKa")
    grid = np.arange(10.0, two_theta_max, 0.02)
    out = []
    for i in range(n):
        a = 3.91 * (1 + rng.uniform(-0.005, 0.005))
        b = (float(rng.uniform(0.4, 1.0)), float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.5, 1.2)))
        if ordered:
            truth = la05_layered(a, 1 + rng.uniform(-0.004, 0.004), float(rng.uniform(-0.01, 0.01)), b)
        else:
            truth = disordered_average(la_nbo3_parent(a, b), "La1", 0.5)
        bg = (float(rng.uniform(100, 400)), float(rng.uniform(-50, 0)), float(rng.uniform(0, 20)))
        pat = simulate_pattern(
            truth,
            grid,
            inst,
            _instrument_effects(rng, True),
            bg,
            float(rng.uniform(1e4, 4e4)),
            seed=seed * 1000 + i,
        )
        parent = la_nbo3_parent(a * (1 + rng.uniform(-0.002, 0.002)))
        out.append(
            compare_order_disorder(
                pat,
                parent,
                "La1",
                0.5,
                max_mult=max_mult,
                instrument=inst,
                options=RefineOptions(n_background=4),
            )
        )
    return out


def _main_order(count: int) -> None:
    right = 0
    for ordered in (True, False):
        for d in run_order_trials(count, ordered):
            ok = d.ordered == ordered and (not ordered or d.best.multiplicity == 2)
            right += ok
            print(
                ordered,
                d.to_dict()["decision"],
                d.to_dict()["multiplicity"],
                round(d.statistics["r_ratio"], 4),
                round(d.statistics["r_critical"], 4),
            )
    print("order", {"n": 2 * count, "frac_correct": right / (2 * count)})


if __name__ == "__main__":
    torch.set_num_threads(1)
    which, count = sys.argv[1], int(sys.argv[2])
    if which == "order":
        _main_order(count)
    else:
        outcome = (run_linio2 if which == "linio2" else run_spinel)(count)
        print(which, outcome.summary())
