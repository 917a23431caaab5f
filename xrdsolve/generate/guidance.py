"""Physics guidance for the sampler: nudge x̂₀ down the gradient of a pattern mismatch computed with
refine.physics (diffusion-posterior-sampling style, applied to the x̂₀ prediction).

Coarse to fine: peaks are broadened early in the reverse process (large t) and sharpened towards the
end, because the mismatch landscape of sharp peaks is rough. Only active below ``t_start``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from xrdsolve.conditioning.pattern import Pattern
from xrdsolve.conditioning.preprocess import subtract_background
from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, simulate
from xrdsolve.refine.radiation import Radiation

from .trainset import physics_species


class PatternGuidance:
    """A :data:`~xrdsolve.generate.sampler.GuidanceHook` for one measured pattern.

    Mismatch: 1 − cosine similarity of √intensity (background removed) on ≤ ``n_points`` points of the
    measured 2θ grid. Steps are normalised per sample: Δ = −step · g / ‖g‖.
    """

    def __init__(
        self,
        pattern: Pattern,
        frac_step: float = 0.01,
        lattice_step: float = 0.05,
        t_start: float = 0.5,
        n_points: int = 1500,
        instrument: Instrument | None = None,
    ) -> None:
        tt = pattern.two_theta
        idx = np.linspace(0, len(tt) - 1, min(n_points, len(tt))).round().astype(int)
        self.two_theta = torch.as_tensor(tt[idx], dtype=torch.float32)
        y = np.clip(pattern.intensity[idx], 0, None)
        y = subtract_background(y, np.ones_like(y), window=max(15, len(y) // 20))
        y = np.sqrt(np.clip(y, 0, None))
        self.target = torch.as_tensor(y / (np.linalg.norm(y) + 1e-12), dtype=torch.float32)
        self.instrument = instrument or Instrument(
            radiation=pattern.radiation or Radiation.parse("CuKa"), window_fwhm=8.0
        )
        self.frac_step = frac_step
        self.lattice_step = lattice_step
        self.t_start = t_start

    def mismatch(self, species: Tensor, mask: Tensor, frac: Tensor, lattice: Tensor, t: float) -> Tensor:
        """(B,) 1 − cos similarity between the measured and the calculated √pattern."""
        b = species.shape[0]
        sp = torch.as_tensor(physics_species(species.cpu().numpy()))
        cb = CrystalBatch(lattice=lattice.float(), frac=frac.float(), species=sp, occ=mask.float(),
                          b_iso=0.5 * mask.float(), mask=mask)  # fmt: skip
        broad = 1.0 + 40.0 * t  # coarse to fine: wide peaks early
        prof = ProfileParams.default(
            b, dtype=torch.float32, U=0.0, V=0.0, W=20.0 * broad, X=3.0 * broad, Y=0.0
        )
        y = simulate(cb, self.two_theta, self.instrument, prof)
        assert isinstance(y, Tensor)
        y = torch.sqrt(y.clamp_min(0) + 1e-12)
        y = y / (torch.linalg.norm(y, dim=1, keepdim=True) + 1e-12)
        return 1 - y @ self.target

    def __call__(
        self,
        species: Tensor,
        mask: Tensor,
        frac: Tensor,
        lat: Tensor,
        decode: Callable[[Tensor], Tensor],
        t: float,
    ) -> tuple[Tensor, Tensor]:
        if t > self.t_start:
            return torch.zeros_like(frac), torch.zeros_like(lat)
        f = frac.detach().clone().requires_grad_(True)
        z = lat.detach().clone().requires_grad_(True)
        loss = self.mismatch(species, mask, f, decode(z), t).sum()
        gf, gz = torch.autograd.grad(loss, (f, z))
        gf = torch.nan_to_num(gf) * mask[..., None]
        gz = torch.nan_to_num(gz)
        nf = gf.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
        nz = gz.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return -self.frac_step * gf / nf, -self.lattice_step * gz / nz
