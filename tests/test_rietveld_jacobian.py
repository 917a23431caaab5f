"""The engine's Jacobian (shapes rendered once, per-peak forward AD) equals forward-mode AD of the pattern."""

from __future__ import annotations

import pytest
import torch

from xrdsolve.refine.bench import make_benchmark_problem
from xrdsolve.refine.lm import jacobian
from xrdsolve.refine.params import parameterize
from xrdsolve.refine.rietveld import RefineOptions, RietveldModel, _initial_theta, _instrument_for
from xrdsolve.refine.rietveld_jacobian import model_jacobian


@pytest.fixture(scope="module")
def model_and_theta():
    pattern, _, cands = make_benchmark_problem(3, seed=2)
    inst, start = _instrument_for(pattern, None, None)
    model = RietveldModel(pattern, [[parameterize(c) for c in cands]], inst, RefineOptions())
    theta, _, _ = _initial_theta(model, start, 0.1)
    model.update_hkl(theta)
    lay = model.layout
    theta[:, lay.bg_slice] = torch.tensor([50.0, 5.0, -3.0, 1.0, 0.5, 0.2])
    theta[:, lay.global_index("U")] = 3.0
    theta[:, lay.global_index("V")] = -1.0
    theta[:, lay.global_index("zero")] = 0.02
    theta[:, lay.global_index("displacement")] = 40.0
    theta[:, lay.phase_profile_index(0, "X")] = 1.5
    theta[:, lay.phase_profile_index(0, "po_ratio")] = 0.9
    return model, theta


@pytest.mark.parametrize("asym", [0.0, 0.01])
def test_model_jacobian_equals_forward_ad(model_and_theta, asym: float) -> None:
    model, theta = model_and_theta
    theta = theta.clone()
    theta[:, model.layout.global_index("asym")] = asym
    cols = torch.ones(theta.shape[1], dtype=torch.bool)
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
    cols = torch.ones(theta.shape[1], dtype=torch.bool)
    full = model_jacobian(model, theta, cols)
    idx = torch.tensor([2, 0])
    sub = model_jacobian(model, theta[idx], cols, index=idx)
    assert torch.allclose(sub, full[idx], rtol=1e-10, atol=1e-10 * float(full.abs().max()))
