"""Batched Levenberg–Marquardt on toy problems with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xrdsolve.refine.lm import jacobian, levenberg_marquardt


def _exp_problem(bsz: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 4, 200, dtype=torch.float64)
    true = torch.stack(
        [
            1 + 4 * torch.rand(bsz, generator=gen, dtype=torch.float64),
            0.3 + torch.rand(bsz, generator=gen, dtype=torch.float64),
            torch.rand(bsz, generator=gen, dtype=torch.float64),
        ],
        dim=1,
    )
    sigma = 0.02
    y = true[:, :1] * torch.exp(-true[:, 1:2] * x) + true[:, 2:3]
    y = y + sigma * torch.randn(y.shape, generator=gen, dtype=torch.float64)

    def resid(theta: torch.Tensor) -> torch.Tensor:
        calc = theta[:, :1] * torch.exp(-theta[:, 1:2] * x) + theta[:, 2:3]
        return (y - calc) / sigma

    return resid, true


def test_batched_exponential_recovers_truth_within_esd() -> None:
    bsz = 64
    resid, true = _exp_problem(bsz)
    start = true * (1 + 0.3 * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)) + 0.05
    res = levenberg_marquardt(resid, start, max_iter=100)
    assert bool(res.converged.all())
    z = ((res.theta - true) / res.esd).abs()
    assert float((z < 3).double().mean()) >= 0.95
    assert torch.allclose(res.gof, torch.ones(bsz, dtype=torch.float64), atol=0.2)


def test_linear_problem_matches_closed_form() -> None:
    """Straight line: LM solution and esds equal the normal-equation formulas."""
    gen = torch.Generator().manual_seed(1)
    x = torch.linspace(-1, 1, 50, dtype=torch.float64)
    y = 2.0 + 3.0 * x + 0.1 * torch.randn(50, generator=gen, dtype=torch.float64)
    sig = 0.1

    def resid(theta: torch.Tensor) -> torch.Tensor:
        return (y - theta[:, :1] - theta[:, 1:2] * x) / sig

    res = levenberg_marquardt(resid, torch.zeros(1, 2, dtype=torch.float64))
    a = np.vstack([np.ones(50), x.numpy()]).T / sig
    sol, *_ = np.linalg.lstsq(a, y.numpy() / sig, rcond=None)
    chi2 = float(((a @ sol - y.numpy() / sig) ** 2).sum())
    cov = np.linalg.inv(a.T @ a) * chi2 / 48
    assert np.allclose(res.theta[0].numpy(), sol, atol=1e-8)
    assert np.allclose(res.esd[0].numpy(), np.sqrt(np.diag(cov)), rtol=1e-6)
    assert res.correlation[0, 0, 1].item() == pytest.approx(
        cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]), rel=1e-6
    )


def test_bounds_fixed_params_and_padding() -> None:
    resid, true = _exp_problem(4, seed=3)
    start = true.clone() * 1.2
    free = torch.ones(4, 3, dtype=torch.bool)
    free[1, 2] = False  # hold the offset of candidate 1
    upper = torch.full_like(start, math.inf)
    upper[2, 0] = true[2, 0] * 0.9  # amplitude of candidate 2 bounded below its true value
    res = levenberg_marquardt(resid, start, free=free, upper=upper)
    assert res.theta[1, 2] == start[1, 2]
    assert res.esd[1, 2] == 0
    assert res.theta[2, 0] <= upper[2, 0] + 1e-12
    assert res.theta[2, 0] == pytest.approx(float(upper[2, 0]))
    assert torch.allclose(res.theta[0], true[0], rtol=0.05)


def test_singular_normal_matrix_flagged_not_crashing() -> None:
    """Two parameters with identical effect (a + b): the fit works, the candidate is flagged singular."""
    x = torch.linspace(0, 1, 30, dtype=torch.float64)
    y = 1.5 + 0 * x

    def resid(theta: torch.Tensor) -> torch.Tensor:
        return (y - theta[:, :1] - theta[:, 1:2]) / 0.01

    res = levenberg_marquardt(resid, torch.zeros(2, 2, dtype=torch.float64))
    assert bool(res.singular.all())
    assert torch.allclose(res.theta.sum(dim=1), torch.full((2,), 1.5, dtype=torch.float64), atol=1e-6)
    assert torch.isfinite(res.esd).all()


def test_diverging_candidate_does_not_poison_batch() -> None:
    resid_ok, true = _exp_problem(3, seed=5)

    def resid(theta: torch.Tensor) -> torch.Tensor:
        r = resid_ok(theta)
        # candidate 1 produces NaN as soon as its decay rate goes above 0.2 (it starts above)
        bad = (theta[:, 1] > 0.2) & (torch.arange(3) == 1)
        return torch.where(bad[:, None], torch.full_like(r, float("nan")), r)

    res = levenberg_marquardt(resid, true * 1.1)
    assert bool(res.diverged[1])
    assert not bool(res.diverged[0]) and not bool(res.diverged[2])
    assert bool(res.converged[0]) and bool(res.converged[2])
    assert torch.allclose(res.theta[[0, 2]], true[[0, 2]], rtol=0.05, atol=0.02)
    assert res.status(1) == "diverged"


def test_central_differences_agree_with_forward_mode() -> None:
    resid, true = _exp_problem(8, seed=7)
    a = levenberg_marquardt(resid, true * 1.1, jacobian_method="forward")
    b = levenberg_marquardt(resid, true * 1.1, jacobian_method="central")
    assert torch.allclose(a.theta, b.theta, rtol=1e-5)
    assert torch.allclose(a.esd, b.esd, rtol=1e-3)


def test_batched_jacobian_matches_forward_mode() -> None:
    """The stacked one-hot-tangent Jacobian (residual_fn(theta, index)) equals the per-column one."""
    resid, true = _exp_problem(5, seed=11)
    x = torch.linspace(0, 4, 200, dtype=torch.float64)

    def resid_indexed(theta: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            return resid(theta)
        # rows of a stacked theta map to candidates through index; the data do not enter the Jacobian
        calc = theta[:, :1] * torch.exp(-theta[:, 1:2] * x) + theta[:, 2:3]
        return -calc / 0.02  # d/dθ of (y − calc)/σ does not depend on y

    from xrdsolve.refine.lm import jacobian

    j_batched = jacobian(resid_indexed, true * 1.1, method="batched", max_rows=4)
    j_forward = jacobian(resid, true * 1.1, method="forward")
    assert torch.allclose(j_batched, j_forward, atol=1e-9)


def test_deadline_stops_iterating_and_keeps_the_best_parameters() -> None:
    import time

    resid, true = _exp_problem(4)
    start = true * 1.3 + 0.05
    chi2_start = float((resid(start) ** 2).sum())
    past = levenberg_marquardt(resid, start, max_iter=100, deadline=time.perf_counter() - 1.0)
    assert past.timed_out and int(past.iterations.sum()) == 0
    assert torch.equal(past.theta, start) and past.status(0) == "deadline"
    full = levenberg_marquardt(resid, start, max_iter=100, deadline=time.perf_counter() + 600.0)
    assert not full.timed_out and bool(full.converged.all()) and float(full.chi2.sum()) < chi2_start


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_jacobian_freezes_only_its_candidate(bad_value: float) -> None:
    """A NaN/Inf anywhere in one candidate's Jacobian (found through JᵀJ) freezes that candidate only."""
    resid, true = _exp_problem(3, seed=13)

    def jacobian_fn(theta_rows: torch.Tensor, cols: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        full = torch.zeros(3, theta_rows.shape[1], dtype=theta_rows.dtype)
        rows = torch.arange(3) if index is None else index
        full[rows] = theta_rows
        jac = jacobian(resid, full, cols, "forward")[rows][:, :, cols]
        if index is not None:  # during the iterations candidate 1 reports one bad entry
            jac[rows == 1, 17, 0] = bad_value
        return jac

    res = levenberg_marquardt(resid, true * 1.1, jacobian_fn=jacobian_fn)
    assert bool(res.diverged[1]) and int(res.iterations[1]) == 0  # frozen before its first step
    assert bool(res.converged[0]) and bool(res.converged[2])
    assert torch.allclose(res.theta[[0, 2]], true[[0, 2]], rtol=0.05, atol=0.02)


def test_deadline_starts_no_iteration_expected_to_end_after_it() -> None:
    """An iteration expected to outlast the time left (from ``iteration_seconds``) is not started."""
    import time

    resid, true = _exp_problem(2)
    start = true * 1.3 + 0.05
    res = levenberg_marquardt(
        resid, start, max_iter=100, deadline=time.perf_counter() + 100.0, iteration_seconds=1000.0
    )
    assert res.timed_out and int(res.iterations.sum()) == 0 and torch.equal(res.theta, start)
    assert res.iteration_seconds == 1000.0


def test_deadline_keeps_the_last_normal_matrix_for_the_esds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of time, the esds come from the last iteration's JᵀJ (no closing Jacobian past the deadline);
    on a clock that ticks one second per residual evaluation the run returns before the deadline, with esds
    close to those of a fresh Jacobian at the parameters reached."""
    import types

    import xrdsolve.refine.lm as lm_module

    resid, true = _exp_problem(3, seed=5)
    clock = [0.0]

    def ticking(theta: torch.Tensor) -> torch.Tensor:
        clock[0] += 1.0
        return resid(theta)

    monkeypatch.setattr(lm_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    start = true * 1.05
    res = levenberg_marquardt(ticking, start, max_iter=100, deadline=40.0, ftol=1e-14, xtol=1e-14)
    assert res.timed_out and int(res.iterations.min()) >= 2
    assert clock[0] <= 40.0  # no evaluation after the deadline: the covariance did not cost a Jacobian
    fresh = levenberg_marquardt(resid, res.theta, max_iter=0)
    assert torch.all(res.esd > 0)
    assert torch.allclose(res.esd, fresh.esd, rtol=0.05)


def test_no_room_for_the_closing_jacobian(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closing Jacobian estimated (``closing_seconds``) to end after the deadline is not computed: the
    esds come from the last normal matrix where an iteration ran, else they are NaN (not computed), and the
    run ends before the deadline either way; with room, the esds are those of a fresh Jacobian."""
    import types

    import xrdsolve.refine.lm as lm_module

    resid, true = _exp_problem(3, seed=5)
    clock = [0.0]
    jacobians: list[int] = []

    def ticking(theta: torch.Tensor) -> torch.Tensor:
        clock[0] += 0.01
        return resid(theta)

    def counted(theta_rows: torch.Tensor, cols: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        jacobians.append(theta_rows.shape[0])
        return jacobian(resid, theta_rows, cols, "forward")[:, :, cols]

    monkeypatch.setattr(lm_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    start = true * 1.05
    # converges well before the deadline, but the closing Jacobian is expected to take 100 s
    res = levenberg_marquardt(ticking, start, deadline=50.0, closing_seconds=100.0, jacobian_fn=counted)
    assert bool(res.converged.all()) and not res.timed_out
    fresh = levenberg_marquardt(resid, res.theta, max_iter=0)
    assert torch.all(res.esd > 0) and torch.allclose(res.esd, fresh.esd, rtol=0.05)
    n_iterations = len(jacobians)
    # no iteration at all (the deadline is already near): nothing to take the esds from
    clock[0] = 0.0
    none = levenberg_marquardt(
        ticking, start, deadline=1.0, iteration_seconds=5.0, closing_seconds=5.0, jacobian_fn=counted
    )
    assert none.timed_out and int(none.iterations.sum()) == 0 and len(jacobians) == n_iterations
    assert bool(torch.isnan(none.esd).all()) and bool(torch.isnan(none.covariance).all())
    assert not bool(none.singular.any()) and clock[0] <= 1.0
    # with room the closing Jacobian is computed as before
    roomy = levenberg_marquardt(ticking, start, deadline=1e6, closing_seconds=1.0, jacobian_fn=counted)
    assert torch.allclose(roomy.esd, levenberg_marquardt(resid, roomy.theta, max_iter=0).esd, rtol=1e-6)
