"""The engine's Jacobian (shapes rendered once, per-peak forward AD) equals forward-mode AD of the pattern."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwad

from xrdsolve.refine.bench import make_benchmark_problem
from xrdsolve.refine.lm import jacobian
from xrdsolve.refine.params import parameterize
from xrdsolve.refine.rietveld import (
    DEFAULT_STRATEGY,
    RefineOptions,
    RietveldModel,
    Stage,
    _initial_theta,
    _instrument_for,
)
from xrdsolve.refine.rietveld_jacobian import model_jacobian


@pytest.fixture(scope="module", params=["merged", "full"])
def model_and_theta(request):
    """Three rutile candidates; "merged": reflections listed once per Laue orbit (the default, no texture),
    "full": a strategy that refines preferred orientation keeps every equivalent (po_ratio 0.9 here)."""
    pattern, _, cands = make_benchmark_problem(3, seed=2)
    inst, start = _instrument_for(pattern, None, None)
    merged = request.param == "merged"
    strategy = DEFAULT_STRATEGY if merged else (*DEFAULT_STRATEGY, Stage("+texture", ("po",)))
    model = RietveldModel(pattern, [[parameterize(c) for c in cands]], inst, RefineOptions(strategy=strategy))
    assert model.merges_equivalents == merged
    theta, _, _ = _initial_theta(model, start, 0.1)
    model.update_hkl(theta)
    lay = model.layout
    theta[:, lay.bg_slice] = torch.tensor([50.0, 5.0, -3.0, 1.0, 0.5, 0.2])
    theta[:, lay.global_index("U")] = 3.0
    theta[:, lay.global_index("V")] = -1.0
    theta[:, lay.global_index("zero")] = 0.02
    theta[:, lay.global_index("displacement")] = 40.0
    theta[:, lay.phase_profile_index(0, "X")] = 1.5
    if not merged:
        theta[:, lay.phase_profile_index(0, "po_ratio")] = 0.9
    return model, theta


def _columns(model: RietveldModel, theta: torch.Tensor) -> torch.Tensor:
    """Every column the model's strategy can refine (preferred orientation only with full reflection lists)."""
    cols = torch.ones(theta.shape[1], dtype=torch.bool)
    if model.merges_equivalents:
        cols[model.layout.phase_profile_index(0, "po_ratio")] = False
    return cols


@pytest.mark.parametrize("asym", [0.0, 0.01])
def test_model_jacobian_equals_forward_ad(model_and_theta, asym: float) -> None:
    model, theta = model_and_theta
    theta = theta.clone()
    theta[:, model.layout.global_index("asym")] = asym
    cols = _columns(model, theta)
    ref = jacobian(model.residuals, theta, cols, "batched", 256)
    ours = model_jacobian(model, theta, cols, max_rows=256)
    scale = ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    assert torch.allclose(ours / scale, ref / scale, atol=1e-9)
    assert bool((ref.abs().amax(dim=1) > 0).sum() > 10)  # many non-trivial columns compared


def test_model_jacobian_subset_of_columns(model_and_theta) -> None:
    model, theta = model_and_theta
    cols = torch.zeros(theta.shape[1], dtype=torch.bool)
    cols[[0, 7, model.layout.phase_profile_index(0, "scale")]] = True
    ours = model_jacobian(model, theta, cols, max_rows=64)
    ref = jacobian(model.residuals, theta, cols, "forward")
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))
    assert float(ours[:, :, ~cols].abs().max()) == 0.0
    compact = model_jacobian(model, theta, cols, max_rows=64, compact=True)
    assert compact.shape == (theta.shape[0], ours.shape[1], int(cols.sum()))
    assert torch.equal(compact, ours[:, :, cols])


def test_model_jacobian_of_a_subset_of_candidates(model_and_theta) -> None:
    model, theta = model_and_theta
    theta = theta.clone()
    theta[:, model.layout.global_index("asym")] = 0.01
    cols = _columns(model, theta)
    full = model_jacobian(model, theta, cols)
    idx = torch.tensor([2, 0])
    sub = model_jacobian(model, theta[idx], cols, index=idx)
    assert torch.allclose(sub, full[idx], rtol=1e-10, atol=1e-10 * float(full.abs().max()))


def _random_peaks(grid: torch.Tensor, n_batch: int, n_peaks: int, seed: int):
    """Peaks spread over (and past) both ends of the grid, with widths of 0.05–0.6°."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = float(grid[0]), float(grid[-1])

    def u(a: float, b: float) -> torch.Tensor:
        return a + (b - a) * torch.rand(n_peaks, generator=gen, dtype=torch.float64)

    bidx = torch.randint(0, n_batch, (n_peaks,), generator=gen)
    return bidx, u(lo - 3.0, hi + 3.0), u(10.0, 100.0), u(0.05, 0.6), u(0.0, 1.0)


@pytest.mark.parametrize(("uniform", "blocks"), [(True, False), (False, False), (True, True)])
def test_shape_product_equals_autograd_of_the_renderer(uniform: bool, blocks: bool, monkeypatch) -> None:
    """Σ_j ∂y/∂(A, c, Γ, η)_j · T equals the renderer's own derivatives (same windows, same Gaussian cut),
    including windows running past the grid's ends, on the bucketed (uniform) and ragged (non-uniform) paths;
    also with the renderer's buckets and the derivative matrix split into blocks of a few hundred values (as
    the memory caps split a synchrotron pattern's)."""
    import xrdsolve.refine.physics.profile as profile
    import xrdsolve.refine.rietveld_jacobian as jacobian
    from xrdsolve.refine.physics.profile import render_peaks
    from xrdsolve.refine.rietveld_jacobian import _shape_product

    if blocks:
        monkeypatch.setattr(profile, "MAX_BLOCK_VALUES", 500)
        monkeypatch.setattr(jacobian, "MAX_SHAPE_VALUES", 900)

    grid = torch.arange(10.0, 30.0, 0.02, dtype=torch.float64)
    if not uniform:
        grid = grid + 0.4 * (grid - 10.0) ** 2 / 400.0
    n_batch, window = 2, 20.0
    bidx, centre, area, fwhm, eta = _random_peaks(grid, n_batch, 40, seed=3)

    def render(a: torch.Tensor, c: torch.Tensor, g: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return render_peaks(grid, bidx, c, a, g, e, n_batch, window).reshape(-1)

    inputs = (area, centre, fwhm, eta)
    columns = []  # forward-mode AD, one input at a time (the renderer's analytic jvp)
    for q, x in enumerate(inputs):
        for j in range(x.shape[0]):
            tangent = torch.zeros_like(x)
            tangent[j] = 1.0
            with fwad.dual_level():
                args = [fwad.make_dual(x, tangent) if i == q else v for i, v in enumerate(inputs)]
                columns.append(fwad.unpack_dual(render(*args)).tangent)
    ref = torch.stack(columns, dim=1)
    tangents = torch.randn(
        4 * centre.shape[0], 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    ours = _shape_product(grid, n_batch, (bidx, centre, area, fwhm, eta), window, tangents)
    expected = ref @ tangents
    assert float(expected.abs().max()) > 0
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-10 * float(expected.abs().max()))
    edge = (centre < grid[0]) | (centre > grid[-1])
    assert bool(edge.any())  # some peaks centred outside the grid still reach into it
    if blocks:
        layout = profile.window_layout(grid, bidx, centre, fwhm, n_batch, window)
        assert layout is not None and len(layout.plan.buckets) > 5
        assert all(b.index.shape[0] == 1 or b.index.shape[0] * b.size <= 500 for b in layout.plan.buckets)
        pieces = list(jacobian._shape_columns(grid, n_batch, (bidx, centre, area, fwhm, eta), window))
        assert len(pieces) > 3


def test_shape_product_of_peaks_outside_the_grid_is_zero() -> None:
    from xrdsolve.refine.rietveld_jacobian import _shape_product

    grid = torch.arange(10.0, 30.0, 0.02, dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    peaks = (
        torch.zeros(3, dtype=torch.int64),
        torch.tensor([50.0, 60.0, 70.0]).double(),
        one,
        0.1 * one,
        0.5 * one,
    )
    out = _shape_product(grid, 1, peaks, 20.0, torch.ones(12, 2, dtype=torch.float64))
    assert out.shape == (grid.shape[0], 2) and float(out.abs().max()) == 0.0


def test_stacked_passes_stay_within_the_memory_budget(model_and_theta, monkeypatch) -> None:
    """The stacked forward-mode passes hold at most STACK_BUDGET reflections × atoms (down to one column a
    pass) — they used to stack at least max_rows rows whatever the problem size, and a 5,984-reflection
    candidate in a solve grew to 12 GB — and the Jacobian does not depend on how the columns are stacked."""
    import xrdsolve.refine.rietveld_jacobian as rj

    model, theta = model_and_theta
    cols = _columns(model, theta)
    reference = model_jacobian(model, theta, cols, max_rows=128)
    requested: list[int] = []
    real = rj.stacked_unit_tangents

    def spy(theta_, columns, max_rows):
        requested.append(max_rows)
        return real(theta_, columns, max_rows)

    monkeypatch.setattr(rj, "stacked_unit_tangents", spy)
    monkeypatch.setattr(rj, "STACK_BUDGET", 2_000)
    small = model_jacobian(model, theta, cols, max_rows=128)
    assert requested and max(requested) < 128
    assert torch.allclose(small, reference, rtol=1e-12, atol=1e-12 * float(reference.abs().max()))


def test_self_check_falls_back_to_ad_and_is_paced(model_and_theta, monkeypatch) -> None:
    """Peak shapes that disagree with the model's pattern are caught on a configuration's first Jacobian (the
    AD Jacobian is returned); afterwards the check runs on every SELF_CHECK_EVERY-th call only."""
    import xrdsolve.refine.rietveld_jacobian as rj

    model, theta = model_and_theta
    theta = theta.clone()
    theta[:, model.layout.global_index("asym")] = 0.0
    cols = torch.zeros(theta.shape[1], dtype=torch.bool)
    cols[[model.layout.global_index("W"), model.layout.phase_profile_index(0, "scale")]] = True
    ref = jacobian(model.residuals, theta, cols, "forward")
    model.jacobian_calls.clear()
    real = rj._shape_values
    monkeypatch.setattr(rj, "_shape_values", lambda *a, **k: real(*a, **k).mul_(1.01))  # 1 % wrong shapes
    checked = model_jacobian(model, theta, cols)
    assert torch.allclose(checked, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))
    patterns: list[int] = []
    real_patterns = model.phase_patterns
    monkeypatch.setattr(model, "phase_patterns", lambda *a, **k: patterns.append(1) or real_patterns(*a, **k))
    unchecked = model_jacobian(model, theta, cols)  # second call: not checked, the wrong shapes go through
    assert not patterns
    assert float((unchecked - ref).abs().max()) > 1e-3 * float(ref.abs().max())
    for _ in range(rj.SELF_CHECK_EVERY - 2):
        model_jacobian(model, theta, cols)
    assert not patterns
    rechecked = model_jacobian(model, theta, cols)  # the SELF_CHECK_EVERY-th call after the first
    assert patterns
    assert torch.allclose(rechecked, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))
