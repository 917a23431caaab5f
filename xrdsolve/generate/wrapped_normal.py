"""The wrapped normal distribution on the unit torus [0, 1)³ and its score (DiffCSP-style coordinates)."""

from __future__ import annotations

import torch
from torch import Tensor


def wrap(x: Tensor) -> Tensor:
    """Map fractional coordinates to [0, 1)."""
    return x - torch.floor(x)


def wrap_centered(x: Tensor) -> Tensor:
    """Map fractional differences to [-0.5, 0.5)."""
    return x - torch.floor(x + 0.5)


def log_prob(x: Tensor, sigma: Tensor, n_images: int = 10) -> Tensor:
    """log density (up to the constant −½log 2πσ²) of the 1-D wrapped normal WN(0, σ²) at ``x`` (elementwise)."""
    k = torch.arange(-n_images, n_images + 1, dtype=x.dtype, device=x.device)
    xc = wrap_centered(x)[..., None] + k
    return torch.logsumexp(-(xc**2) / (2 * sigma[..., None] ** 2), dim=-1)


def score(x: Tensor, sigma: Tensor, n_images: int = 10) -> Tensor:
    """∂/∂x log p_σ(x) of the wrapped normal WN(0, σ²) (fractional units⁻¹), elementwise; ``sigma`` broadcasts."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand_as(x)
    k = torch.arange(-n_images, n_images + 1, dtype=x.dtype, device=x.device)
    xc = wrap_centered(x)[..., None] + k
    w = torch.softmax(-(xc**2) / (2 * sigma[..., None] ** 2), dim=-1)
    return -(w * xc).sum(-1) / sigma**2


def score_second_moment(sigma: Tensor, n_grid: int = 2001) -> Tensor:
    """E[score²] under WN(0, σ²) by quadrature on [-½, ½) (→ 1/σ² for small σ); shape of ``sigma``."""
    sig = torch.as_tensor(sigma, dtype=torch.float64)
    x = torch.linspace(-0.5, 0.5, n_grid, dtype=torch.float64)[:-1]
    shape = sig.shape
    s = sig.reshape(-1, 1)
    lp = log_prob(x.expand(s.shape[0], -1), s.expand(-1, x.shape[0]))
    p = torch.softmax(lp, dim=-1)  # normalised on the grid
    sc = score(x.expand(s.shape[0], -1), s.expand(-1, x.shape[0]))
    return (p * sc**2).sum(-1).reshape(shape).to(torch.as_tensor(sigma).dtype)


def sample(shape: tuple[int, ...], sigma: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draws from WN(0, σ²) wrapped to [0, 1)."""
    eps = torch.randn(shape, generator=generator, dtype=sigma.dtype, device=sigma.device)
    return wrap(eps * sigma)
