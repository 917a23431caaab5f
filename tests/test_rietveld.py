"""Rietveld engine: synthetic recoveries, outputs, bad input, batched == sequential."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser

from xrdsolve.refine.bench import make_benchmark_problem, perturb, simulate_pattern
from xrdsolve.refine.errors import RefineError, StructureError
from xrdsolve.refine.rietveld import RefineOptions, refine, refine_candidates


@pytest.fixture(scope="module")
def rutile_problem():
    return make_benchmark_problem(3, seed=1)


@pytest.fixture(scope="module")
def rutile_result(rutile_problem):
    pattern, _, cands = rutile_problem
    return refine(pattern, cands[0])


def test_rutile_recovers_truth_within_3_esd(rutile_problem, rutile_result) -> None:
    _, truth, _ = rutile_problem
    r = rutile_result
    assert r.converged, r.status
    assert r.gof < 1.2
    ph = r.phases[0]
    for name, true in zip(("a", "c"), (truth.lattice.a, truth.lattice.c), strict=True):
        v = ph.lattice[name]
        assert v.esd > 0
        assert abs(v.value - true) < 3 * v.esd, (name, v, true)
    o = next(s for s in ph.sites if s.occupancy.keys() == {"O"})
    x = o.xyz[0]
    assert abs(x.value - 0.3049) < 3 * x.esd or abs(x.value - (1 - 0.3049)) < 3 * x.esd
    assert o.xyz[0].value == pytest.approx(o.xyz[1].value)  # (x, x, 0) special position kept
    assert o.xyz[2].esd == 0.0
    for s in ph.sites:
        true_b = 0.5 if "Ti" in s.occupancy else 0.8
        assert abs(s.b_iso.value - true_b) < 3 * s.b_iso.esd + 1e-9
    assert 0 <= ph.r_bragg < 0.05
    assert ph.weight_fraction.value == pytest.approx(1.0)
    # stage log: Rwp never increases through the staged strategy
    rwps = [s.rwp for s in r.stages]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(rwps))
    assert r.stages[-1].rwp == pytest.approx(r.rwp)


def test_summary_schema_and_outputs(rutile_result, tmp_path) -> None:
    r = rutile_result
    d = json.loads(json.dumps(r.to_summary_dict()))
    for key in ("rwp", "rp", "gof", "converged", "phases"):
        assert key in d
    assert 0 < d["rwp"] < 1
    ph = d["phases"][0]
    for key in ("formula", "spacegroup", "lattice", "weight_fraction", "sites"):
        assert key in ph
    assert set(ph["lattice"]) == {"a", "b", "c", "alpha", "beta", "gamma"}
    assert set(ph["lattice"]["a"]) == {"value", "esd"}
    site = ph["sites"][0]
    assert {"label", "wyckoff", "xyz", "b_iso", "occupancy"} <= set(site)
    assert isinstance(site["occupancy"], dict)
    assert set(next(iter(site["occupancy"].values()))) == {"value", "esd"}
    # refined CIF parses back to the refined structure
    cif = r.to_cif()
    s = CifParser.from_str(cif).parse_structures(primitive=False)[0]
    assert len(s) == len(r.phases[0].structure)
    assert s.lattice.a == pytest.approx(r.phases[0].lattice["a"].value, abs=1e-4)
    assert "(" in cif  # esds written
    ax = r.plot()
    assert ax.get_xlabel().startswith("2θ")
    r.write_xye(tmp_path / "fit.xye")
    data = np.loadtxt(tmp_path / "fit.xye")
    assert data.shape == (r.two_theta.size, 5)
    assert np.allclose(data[:, 4], data[:, 1] - data[:, 2], atol=1e-5)


def test_candidates_batched_match_sequential(rutile_problem) -> None:
    pattern, _, cands = rutile_problem
    batched = refine_candidates(pattern, cands)
    single = [refine(pattern, c) for c in cands[1:]]
    for rb, rs in zip(batched[1:], single, strict=True):
        assert rb.rwp == pytest.approx(rs.rwp, rel=1e-3)
        assert rb.phases[0].lattice["a"].value == pytest.approx(rs.phases[0].lattice["a"].value, abs=1e-4)


def test_structure_without_atoms_raises(rutile_problem) -> None:
    pattern, _, _ = rutile_problem
    with pytest.raises(StructureError):
        refine(pattern, Structure(Lattice.cubic(4.0), [], []))


def test_phase_outside_range_raises(rutile_problem) -> None:
    pattern, _, _ = rutile_problem
    tiny = Structure(Lattice.cubic(1.2), ["Si"], [[0, 0, 0]])  # first reflection d = 1.2 Å -> 2θ ≈ 80°...
    with pytest.raises(RefineError, match="no reflections"):
        refine(pattern, tiny, options=RefineOptions(two_theta_max=40.0))


def test_nan_in_data_raises(rutile_problem) -> None:
    pattern, _, cands = rutile_problem
    bad = type(pattern)(pattern.two_theta, pattern.intensity.copy(), pattern.radiation, pattern.geometry)
    bad.intensity[100] = math.nan
    with pytest.raises(RefineError, match="non-finite"):
        refine(bad, cands[0])


def test_candidate_outside_range_is_flagged_not_fatal(rutile_problem) -> None:
    pattern, truth, _ = rutile_problem
    tiny = Structure(Lattice.cubic(0.9), ["Si"], [[0, 0, 0]])  # no reflection below 2θ = 117°
    out = refine_candidates(pattern, [truth, tiny])
    assert not out[1].converged and out[1].status == "no_reflections_in_range"
    assert out[0].converged and out[0].gof < 1.3


def test_perturb_keeps_symmetry(rutile_problem) -> None:
    _, truth, _ = rutile_problem
    s = perturb(truth, np.random.default_rng(3))
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    assert SpacegroupAnalyzer(s, symprec=1e-4).get_space_group_number() == 136
    assert simulate_pattern(s, np.arange(20, 40, 0.05)).intensity.max() > 0


def test_anomalous_dispersion_default_follows_the_probe(rutile_problem) -> None:
    """X-ray refinements include f′ + i f″ as GSAS-II does unless RefineOptions(anomalous=False); neutrons never;
    an explicit Instrument keeps its own setting."""
    from xrdsolve.refine.physics import Instrument
    from xrdsolve.refine.rietveld import _instrument_for

    pat = rutile_problem[0]
    assert _instrument_for(pat, None, "CuKa")[0].anomalous
    assert not _instrument_for(pat, None, "CuKa", anomalous=False)[0].anomalous
    assert not _instrument_for(pat, None, "neutron:1.5")[0].anomalous
    assert not _instrument_for(pat, Instrument.lab("CuKa", anomalous=False), None, anomalous=True)[
        0
    ].anomalous


def test_background_terms_fit_an_amorphous_hump_that_six_leave_in_the_residual(rutile_problem) -> None:
    """A broad hump (σ 8° at 30°, a glass holder's scattering) under a 5–90° rutile pattern: with the terms that
    :func:`background_terms` picks for the range (15) the true structure refines to the noise floor (1.03); six
    Chebyshev terms cannot follow the hump (GoF 7.5). A narrower hump (σ 5°) needs about 20 terms."""
    from xrdsolve.refine.bench import SimulatedPattern
    from xrdsolve.refine.rietveld import background_terms

    _, truth, _ = rutile_problem
    grid = np.arange(5.0, 90.0, 0.02)
    clean = simulate_pattern(truth, grid, peak_counts=2.0e4, seed=4)  # Poisson counts on a smooth background
    hump = 1500.0 * np.exp(-0.5 * ((grid - 30.0) / 8.0) ** 2)
    counts = clean.intensity + np.random.default_rng(4).poisson(hump)  # a sum of Poisson counts is Poisson
    pattern = SimulatedPattern(grid, counts, clean.radiation, clean.geometry)
    n = background_terms(grid)
    assert n == 15  # ceil(84.98° / 6°)
    assert background_terms(np.arange(10.0, 40.0, 0.02)) == 6
    assert background_terms(np.arange(2.0, 150.0, 0.02)) == 16
    fine = refine(pattern, truth, options=RefineOptions(n_background=n))
    coarse = refine(pattern, truth, options=RefineOptions(n_background=6))
    assert fine.gof < 1.15
    assert coarse.gof > fine.gof + 1.0


def test_r_bragg_and_esds_can_be_left_out_without_changing_the_fit(rutile_problem, rutile_result) -> None:
    """Screening fits skip R_Bragg (a calculated pattern per reflection) and the esds (a closing Jacobian):
    both come back NaN, and the fit itself is the same."""
    pattern, _, cands = rutile_problem
    quick = refine(pattern, cands[0], options=RefineOptions(r_bragg=False, esds=False))
    assert math.isnan(quick.phases[0].r_bragg)
    assert 0.0 < rutile_result.phases[0].r_bragg < 0.2
    assert quick.rwp == pytest.approx(rutile_result.rwp, rel=1e-9)
    assert quick.n_params == rutile_result.n_params and quick.gof == pytest.approx(
        rutile_result.gof, rel=1e-9
    )
    a_quick, a_full = quick.phases[0].lattice["a"], rutile_result.phases[0].lattice["a"]
    assert a_quick.value == pytest.approx(a_full.value, rel=1e-12)
    assert math.isnan(a_quick.esd) and a_full.esd > 0


def _r_bragg_one_pattern_per_reflection(model, theta, k, b, calc, bg) -> float:
    """Reference R_Bragg: a whole calculated pattern (``simulate``) of each reflection alone."""
    import torch

    from xrdsolve.refine.physics import simulate

    hkl, hmask = model.hkl[k]
    th = theta[b : b + 1]
    crystals = model.crystals(th, k, torch.tensor([b]))
    prof = model.profile(th, k)
    y, _, ws = model.observed_row(b)
    w = ws > 0
    denom = calc - bg
    ratio = np.where(w & (np.abs(denom) > 1e-12), (y - bg) / np.where(np.abs(denom) > 1e-12, denom, 1.0), 0.0)
    i_obs_total = diff_total = 0.0
    with torch.no_grad():
        for h in torch.nonzero(hmask[b]).flatten().tolist():
            mask = torch.zeros(1, hkl.shape[1], dtype=hmask.dtype)
            mask[0, h] = hmask[b, h]
            p = simulate(crystals, model.two_theta, model.instrument, prof, (hkl[b : b + 1], mask))[0].numpy()
            i_calc, i_obs = float((p * w).sum()), float((p * ratio).sum())
            if i_calc > 0:
                i_obs_total += abs(i_obs)
                diff_total += abs(i_obs - i_calc)
    return diff_total / i_obs_total


@pytest.mark.parametrize("asymmetric", [False, True])
def test_r_bragg_equals_whole_patterns_per_reflection(
    asymmetric: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R_Bragg summed over each reflection's own windows (its Kα1 and Kα2 lines; FCJ sub-peaks when the
    profile is asymmetric) equals R_Bragg from a whole calculated pattern per reflection, to 1e-9, for a
    candidate with its atoms off (R_Bragg ≈ 0.2) and one close to the truth."""
    import xrdsolve.refine.results as results

    pattern, truth, cands = make_benchmark_problem(3, seed=1)
    seen: list[tuple[float, float]] = []
    sparse = results._r_bragg

    def both(model, theta, k, b, calc, bg):
        ours = sparse(model, theta, k, b, calc, bg)
        seen.append((ours, _r_bragg_one_pattern_per_reflection(model, theta, k, b, calc, bg)))
        return ours

    from xrdsolve.refine.instrument import InstrumentParameters

    monkeypatch.setattr(results, "_r_bragg", both)
    strategy = RefineOptions().strategy[:1]  # scale and background only: the atoms stay where they are
    instrument = InstrumentParameters(
        pattern.radiation, U=2.0, V=-2.0, W=5.0, SH_L=0.02 if asymmetric else 0.0
    )
    candidates = [cands[0], perturb(truth, np.random.default_rng(2), xyz=0.06)]
    refine_candidates(pattern, candidates, instrument=instrument, options=RefineOptions(strategy=strategy))
    assert len(seen) == 2
    for ours, reference in seen:
        assert ours == pytest.approx(reference, rel=1e-9)
    assert max(r for _, r in seen) > 0.05


def test_time_estimates_scale_with_the_free_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a deadline every LM call is told what its first iteration should cost: the slowest iteration so
    far scaled by its free columns (the final stage refines positions and B_iso too: seconds where the
    lattice stage took a fraction of one); only the final stage gets a closing-Jacobian estimate."""
    import time

    import xrdsolve.refine.rietveld as rietveld

    pattern, _, cands = make_benchmark_problem(2, seed=3)
    calls: list[dict] = []
    real = rietveld.levenberg_marquardt

    def spy(residual_fn, theta0, **kwargs):
        out = real(residual_fn, theta0, **kwargs)
        columns = int(kwargs["free"].any(dim=0).sum())
        estimates = {k: kwargs[k] for k in ("iteration_seconds", "closing_seconds")}
        calls.append({**estimates, "columns": columns, "took": out.iteration_seconds})
        return out

    monkeypatch.setattr(rietveld, "levenberg_marquardt", spy)
    options = RefineOptions(deadline=time.perf_counter() + 600.0, annealing_restarts=())
    refine_candidates(pattern, cands, options=options)
    finals = [c for c in calls if c["closing_seconds"] is not None]
    assert len(finals) == 1 and finals[0] is calls[-1]
    for i, c in enumerate(calls[1:], start=1):
        slowest = max(calls[:i], key=lambda e: e["took"])
        expected = slowest["took"] * max(1.0, c["columns"] / slowest["columns"])
        assert c["iteration_seconds"] == pytest.approx(expected)
    assert finals[0]["closing_seconds"] == finals[0]["iteration_seconds"]
    assert finals[0]["columns"] > min(c["columns"] for c in calls)
