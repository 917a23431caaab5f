"""Background curves: Chebyshev polynomials over the pattern's 2θ range, plus an optional c/2θ term."""

from __future__ import annotations

import torch
from torch import Tensor


def chebyshev_basis(two_theta: Tensor, k: int) -> Tensor:
    """Chebyshev polynomials of the first kind T_0..T_{k−1} (k,M) on 2θ (degrees) mapped to [−1, 1]."""
    lo, hi = two_theta[0], two_theta[-1]
    x = 2.0 * (two_theta - lo) / torch.clamp(hi - lo, min=1e-12) - 1.0
    out = [torch.ones_like(x), x][:k]
    while len(out) < k:
        out.append(2.0 * x * out[-1] - out[-2])
    if not out:
        return two_theta.new_zeros((0, two_theta.shape[0]))
    return torch.stack(out)


def chebyshev_background(
    two_theta: Tensor, coefficients: Tensor, inv_two_theta: Tensor | None = None, base: Tensor | None = None
) -> Tensor:
    """Background (B,M) = Σ_k c_k T_k(x) [+ c_inv / 2θ]; coefficients (B,K), 2θ (M,) in degrees. With ``base``
    (B,M) the background is added to it (one fused matrix product, no separate background array)."""
    bsz, k = coefficients.shape
    if not k:
        bg = two_theta.new_zeros((bsz, two_theta.shape[0])) if base is None else base
    elif base is None:
        bg = coefficients @ chebyshev_basis(two_theta, k)
    else:
        bg = torch.addmm(base, coefficients, chebyshev_basis(two_theta, k))
    if inv_two_theta is not None:
        bg = bg + inv_two_theta[:, None] / two_theta[None, :]
    return bg
