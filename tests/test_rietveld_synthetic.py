"""Synthetic acceptance: ≥50 MP-20 structures, simulated with Poisson noise, refined from perturbed starts
(cell ±1 %, free coordinates ±0.02, B ×2, wrong profile) in ONE batched refinement; measures the fraction of
true parameters within 3 esd and the GoF distribution. Slow (minutes)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from conftest import mp20_test_structures
from pymatgen.core import Structure

from xrdsolve.refine.bench import simulate_pattern
from xrdsolve.refine.params import lattice_parameters, parameterize
from xrdsolve.refine.results import build_result
from xrdsolve.refine.rietveld import (
    RefineOptions,
    RietveldModel,
    _instrument_for,
    _run,
    polar_fixed_parameters,
)

N_STRUCTURES = 50


def _structures(n: int) -> list[Structure]:
    return [s for _, s in mp20_test_structures(n)]


@pytest.mark.slow
@pytest.mark.parametrize("anomalous", [False, True])
def test_synthetic_recovery_batched(shared_data, anomalous: bool) -> None:
    """Measured 2026-11-27 (one thread, ≈ 4–5 min CPU each), simulated and refined alike: without anomalous
    terms 97.4 % of 694 parameters within 3 esd, GoF median 1.005, 50/50 with GoF ≤ 1.2; with f′ f″ (the
    refinement default for X-rays) 96.0 %, GoF median 1.004, 50/50 with GoF ≤ 1.2. Before the lattice stage
    was rerun unbroadened where annealing ended above its start (Fe(OH)₂, mp-626680: GoF 5.1 → 0.99) these
    were 96.4 % and 94.7 %. With the single annealing schedule (no restart) it was 93.8 %: the restart takes
    two local minima (mp-985296 Ag3Pd, mp-1225753) to the truth; mp-625409 (pseudo-hexagonal, a ≈ c)
    converges at GoF 0.996 in the equivalent cell a′ = a + c, which this per-parameter comparison counts as
    10 misses; SmHo3Ni4 (mp-1219027; Sm f″ 12 e, Ho f′ −15 e at Cu Kα) keeps a collective shift along its
    polar axis (about 11 parameters off at GoF 1.0)."""
    from xrdsolve.refine.physics import Instrument

    rng = np.random.default_rng(42)
    truths = _structures(N_STRUCTURES)
    grid = np.arange(15.0, 90.0, 0.025)
    instrument = Instrument.lab("CuKa", anomalous=anomalous)
    patterns = [simulate_pattern(s, grid, instrument, seed=i) for i, s in enumerate(truths)]
    phases = [parameterize(s) for s in truths]
    true_vals = [p.values.copy() for p in phases]
    for p in phases:  # perturbed starting values in the same parameterisation
        lat, xyz, b = p.block("lattice"), p.block("xyz"), p.block("biso")
        p.values[lat] *= (1.0 + rng.uniform(-0.01, 0.01, size=lat.size)) ** 2
        shift = rng.uniform(-0.02, 0.02, size=xyz.size)
        # polar groups: the coordinate held to pin the origin keeps the true origin (same origin choice)
        shift[np.isin(xyz, polar_fixed_parameters(p))] = 0.0
        p.values[xyz] += shift
        p.values[b] *= 2.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opts = RefineOptions(n_background=4)
    inst, start = _instrument_for(patterns[0], None, None, anomalous=anomalous)
    model = RietveldModel(patterns[0], [phases], inst, opts)
    model.set_observations(np.stack([p.intensity for p in patterns]), np.stack([p.sigma for p in patterns]))
    t0 = time.process_time()
    theta, last, logs, dead = _run(model, opts, start)
    cpu = time.process_time() - t0
    torch.set_num_threads(threads)
    results = [build_result(model, theta, last, logs[b], bool(dead[b]), b, 0.0) for b in range(len(truths))]
    z_all: list[float] = []
    gofs = []
    for b, (r, ph, tv) in enumerate(zip(results, phases, true_vals, strict=True)):
        gofs.append(r.gof)
        true_cell = lattice_parameters(ph.lattice_matrix(torch.as_tensor(tv))).numpy()
        for i, name in enumerate(("a", "b", "c")):
            v = r.phases[0].lattice[name]
            if v.esd > 0:
                z_all.append(abs(v.value - true_cell[i]) / v.esd)
        off = model.layout.phase_param_slice(0).start
        for kind in ("xyz", "biso"):
            for j in ph.block(kind):
                e = float(last.esd[b, off + j]) if last is not None else 0.0
                if e > 0:
                    d = float(theta[b, off + j]) - tv[j]
                    if kind == "xyz":
                        d -= round(d)
                    z_all.append(abs(d) / e)
    z = np.asarray(z_all)
    frac3 = float((z < 3).mean())
    gofs_a = np.asarray(gofs)
    figures = {
        "structures": len(truths),
        "parameters": int(z.size),
        "fraction_within_3esd": round(frac3, 4),
        "gof_median": round(float(np.median(gofs_a)), 3),
        "fraction_gof_le_1.2": round(float((gofs_a <= 1.2).mean()), 3),
        "converged": int(sum(r.converged for r in results)),
        "status": {k: sum(r.status == k for r in results) for k in sorted({r.status for r in results})},
        "cpu_s": round(cpu, 1),
    }
    print("SYNTHETIC", json.dumps({"anomalous": anomalous, **figures}))
    assert frac3 >= 0.95
    assert float(np.median(gofs_a)) <= 1.2
    assert float((gofs_a <= 1.2).mean()) >= 0.95


@pytest.mark.slow
def test_lattice_esds_match_the_scatter_over_noise_realisations() -> None:
    """Rutile refined from a +0.3 % cell in 20 Poisson realisations (zero, displacement and the cell all
    refined, correlation ≥ 0.99): the reported esds of a and c agree with the observed scatter of the refined
    values (ratio within 0.6–1.6, the sampling spread of a 20-sample standard deviation being ≈ 16 %).
    Measured 2026-11-26: std(a) 1.92e-4 Å vs mean esd 1.93e-4, std(c) 1.23e-4 vs 1.22e-4; GSAS-II 2.0 on
    the same patterns reports 4.2e-5 Å for a scatter of 1.4e-4 (its cell esds are ≈ 3.4× too small here)."""
    from conftest import rutile

    from xrdsolve.refine.physics import Instrument
    from xrdsolve.refine.rietveld import refine

    truth = rutile()
    start = truth.copy()
    start.scale_lattice(truth.volume * 1.003**3)
    instrument = Instrument.lab("CuKa", anomalous=True)
    grid = np.arange(15.0, 120.0, 0.02)
    rows = []
    for seed in range(20):
        pat = simulate_pattern(truth, grid, instrument, seed=100 + seed)
        res = refine(pat, start, instrument=instrument)
        lat = res.phases[0].lattice
        rows.append((lat["a"].value, lat["a"].esd, lat["c"].value, lat["c"].esd))
    values = np.array(rows)
    for col, true in ((0, 4.5937), (2, 2.9587)):
        scatter = values[:, col].std(ddof=1)
        esd = values[:, col + 1].mean()
        assert 0.6 < esd / scatter < 1.6, (col, esd, scatter)
        assert abs(values[:, col].mean() - true) < 3 * scatter / np.sqrt(len(values))
