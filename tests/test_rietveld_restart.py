"""Annealing restarts (RefineOptions.annealing_restarts): a second staged run with a wider lattice annealing,
each candidate keeping the run with the lower χ²."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.bench import simulate_pattern
from xrdsolve.refine.lm import LMResult
from xrdsolve.refine.physics import Instrument
from xrdsolve.refine.rietveld import RefineOptions, _keep_lower_chi2, refine, refine_candidates

#: Ag3Pd (mp-985296, I4/mmm, c ≈ 2a: (h0l) and (h'0l') peaks overlap) and a start (a +0.08 %, c −0.57 %,
#: B ×2) that the single annealing schedule leaves in a minimum at GoF ≈ 4.4: c stays ~1 % off and the
#: zero and sample displacement run to their bounds to compensate. Measured 2026-11-26 without anomalous
#: dispersion (simulated and refined alike: the trap depends on the exact landscape).
TRUE_A, TRUE_C = 4.114394, 8.178362
INSTRUMENT = Instrument.lab("CuKa", anomalous=False)
START_A, START_C = 4.1175, 8.1318


def _ag3pd(a: float, c: float, b_iso: float) -> Structure:
    s = Structure.from_spacegroup(
        "I4/mmm", Lattice.tetragonal(a, c), ["Ag", "Ag", "Pd"], [[0.5, 0, 0.25], [0, 0, 0.5], [0, 0, 0]]
    )
    s.add_site_property("b_iso", [b_iso] * len(s))
    return s


@pytest.fixture(scope="module")
def trapped_problem():
    truth = _ag3pd(TRUE_A, TRUE_C, 0.6)
    pattern = simulate_pattern(truth, np.arange(15.0, 90.0, 0.025), INSTRUMENT, seed=41)
    return pattern, _ag3pd(START_A, START_C, 1.2)


def test_restart_escapes_the_local_minimum(trapped_problem) -> None:
    pattern, start = trapped_problem
    single = refine(
        pattern,
        start,
        instrument=INSTRUMENT,
        options=RefineOptions(n_background=4, annealing_restarts=(), rescue_gof=None),
    )
    assert single.gof > 2.0  # the trap this test is about (if it stops being one, pick another start)
    restarted = refine(pattern, start, instrument=INSTRUMENT, options=RefineOptions(n_background=4))
    assert restarted.gof < 1.2
    lat = restarted.phases[0].lattice
    for name, true in (("a", TRUE_A), ("c", TRUE_C)):
        assert abs(lat[name].value - true) < 3 * lat[name].esd, (name, lat[name].value, lat[name].esd)
    assert any("annealing" in s.name for s in restarted.stages)


def test_batched_restart_keeps_each_candidates_better_run(trapped_problem) -> None:
    """A candidate that the first run already fits keeps it; the trapped one takes the restart's run."""
    pattern, start = trapped_problem
    good = _ag3pd(TRUE_A * 1.001, TRUE_C * 0.999, 1.2)
    results = refine_candidates(
        pattern, [good, start], instrument=INSTRUMENT, options=RefineOptions(n_background=4)
    )
    assert all(r.gof < 1.2 for r in results), [r.gof for r in results]
    assert "annealing" in results[1].stages[-1].name


def _lm(theta: torch.Tensor, chi2: torch.Tensor) -> LMResult:
    b, p = theta.shape
    zeros = torch.zeros(b, dtype=torch.bool)
    return LMResult(
        theta=theta,
        chi2=chi2,
        chi2_start=chi2,
        n_obs=torch.full((b,), 100),
        n_free=torch.full((b,), p),
        iterations=torch.ones(b, dtype=torch.long),
        converged=~zeros,
        diverged=zeros,
        singular=zeros,
        covariance=theta[:, :, None] * theta[:, None, :],
        esd=theta.abs(),
        correlation=torch.eye(p).expand(b, p, p).clone(),
    )


def test_keep_lower_chi2_merges_row_by_row() -> None:
    ta = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    tb = -ta
    chia, chib = torch.tensor([1.0, 5.0, 2.0]), torch.tensor([2.0, 4.0, torch.inf])
    a = ((ta, _lm(ta, chia), [["a0"], ["a1"], ["a2"]], torch.zeros(3, dtype=torch.bool)), chia)
    b = ((tb, _lm(tb, chib), [["b0"], ["b1"], ["b2"]], torch.tensor([False, False, True])), chib)
    (theta, last, logs, dead), chi2 = _keep_lower_chi2(a, b)
    assert torch.equal(theta, torch.tensor([[1.0, 1.0], [-2.0, -2.0], [3.0, 3.0]]))
    assert logs == [["a0"], ["b1"], ["a2"]]
    assert not bool(dead.any())
    assert torch.equal(chi2, torch.tensor([1.0, 4.0, 2.0]))
    assert last is not None
    assert torch.equal(last.chi2, chi2)
    assert torch.equal(last.covariance[1], tb[1][:, None] * tb[1][None, :])
    assert dataclasses.asdict(last).keys() == dataclasses.asdict(a[0][1]).keys()


def test_cli_no_restart_flag_reaches_the_options(tmp_path, monkeypatch) -> None:
    """``xrdsolve refine --no-restart`` runs one staged pass; the default keeps the restart schedule."""
    from pathlib import Path

    import xrdsolve.refine.rietveld as rietveld
    from xrdsolve.cli import main
    from xrdsolve.refine.errors import RefineError

    seen: list[RefineOptions] = []

    def fake_refine(pattern, structures, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["options"])
        raise RefineError("stopped by the test")

    monkeypatch.setattr(rietveld, "refine", fake_refine)
    examples = Path(__file__).resolve().parents[1] / "data" / "examples"
    args = [
        "refine",
        str(examples / "demo_pattern.xye"),
        str(examples / "rutile_TiO2.cif"),
        "-o",
        str(tmp_path),
    ]
    assert main([*args, "--no-restart"]) == 2
    assert main(args) == 2
    assert tuple(seen[0].annealing_restarts) == ()
    assert tuple(seen[1].annealing_restarts) == tuple(RefineOptions().annealing_restarts) != ()


def test_lattice_stage_is_rerun_unbroadened_when_annealing_ends_worse(shared_data, monkeypatch) -> None:
    """Fe(OH)₂ (MP-20 mp-626680, P2₁/m) from the synthetic acceptance's perturbed cell (B ×2): every annealing
    schedule leads the lattice stage to a minimum above its start (GoF ≈ 5, the cell tens of esd off); the
    stage rerun without broadening from its start reaches the truth (noise seeds 2, 3, 4 trap; 1 and 5 do not).
    """
    from conftest import mp20_test_structures

    import xrdsolve.refine.rietveld as rietveld

    truth = dict(mp20_test_structures(50))["mp-626680"]
    instrument = Instrument.lab("CuKa", anomalous=True)
    pattern = simulate_pattern(truth, np.arange(15.0, 90.0, 0.025), instrument, seed=2)
    start = truth.copy()
    start.lattice = Lattice.from_parameters(7.34039, 3.32682, 7.36647, 90.0, 101.75025, 90.0)
    start.add_site_property("b_iso", [1.2] * len(start))
    fixed = refine(pattern, start, instrument=instrument, options=RefineOptions(n_background=4))
    assert fixed.gof < 1.2
    lat = fixed.phases[0].lattice
    for name, true in zip(("a", "b", "c", "beta"), (*truth.lattice.abc, truth.lattice.beta), strict=True):
        assert abs(lat[name].value - true) < 3 * lat[name].esd, (name, lat[name].value, true, lat[name].esd)
    monkeypatch.setattr(rietveld, "_unless_annealing_lost", lambda model, res, *args: res)
    options = RefineOptions(n_background=4, rescue_gof=None)  # the rescue run would get out of it too
    trapped = refine(pattern, start, instrument=instrument, options=options)
    assert trapped.gof > 2.0  # the trap this test is about (if it stops being one, pick another start)


def test_poor_fits_get_a_run_without_annealing(shared_data) -> None:
    """Fe(OH)₂ (mp-626680, P2₁/m, a ≈ c) simulated as in the GSAS-II cross-check and started from a +0.3 %
    cell: both annealed runs end with a and c confused (GoF 4.8; GSAS-II reaches 5.9 % Rwp from the same
    start), the run without annealing that RefineOptions.rescue_gof gives candidates above GoF 2 reaches the
    truth (GoF 0.99)."""
    from conftest import mp20_test_structures

    cases = [m for m, _ in mp20_test_structures(10)]
    k = cases.index("mp-626680")
    truth = dict(mp20_test_structures(10))["mp-626680"]
    instrument = Instrument.lab("CuKa", anomalous=True)
    pattern = simulate_pattern(truth, np.arange(15.0, 120.0, 0.02), instrument, seed=k)
    start = truth.copy()
    start.scale_lattice(truth.volume * 1.003**3)
    result = refine(pattern, start, instrument=instrument)
    assert result.gof < 1.2 and result.stages[-1].name.endswith("[no annealing]"), result.stages[-1]
    lat = result.phases[0].lattice
    for name, true in zip(("a", "b", "c"), truth.lattice.abc, strict=True):
        assert abs(lat[name].value - true) < 3 * lat[name].esd, (name, lat[name].value, true)
