"""Structure factors F(hkl) = Σ_j occ_j f_j(s) exp(−B_j s²) exp(2πi h·x_j), batched over crystals, hkl, atoms."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .batch import CrystalBatch
from .scattering import anomalous_terms, form_factor, neutron_lengths


def structure_factor(
    crystals: CrystalBatch,
    hkl: Tensor,
    s2: Tensor,
    *,
    table: str = "wk95",
    neutron: bool = False,
    wavelength: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of F (B,R), in electrons (X-ray) or fm (neutron).

    hkl: (B,R,3) integer reflections; s2: (B,R) (sinθ/λ)² = 1/(4d²) in Å⁻². With ``wavelength`` (Å) the
    anomalous terms f′ + i f″ at that wavelength are added to the X-ray form factors.
    """
    dtype = crystals.frac.dtype
    phase = 2.0 * math.pi * torch.bmm(hkl.to(dtype), crystals.frac.transpose(1, 2))  # (B,R,N)
    weight = crystals.occ * crystals.mask.to(dtype)  # (B,N)
    debye = torch.exp(-s2[:, :, None] * crystals.b_iso[:, None, :])  # (B,R,N)
    if neutron:
        f = neutron_lengths(crystals.species, dtype)[:, None, :] * debye
    else:
        f = form_factor(crystals.species, s2, table) * debye
    fw = f * weight[:, None, :]
    cos, sin = torch.cos(phase), torch.sin(phase)
    re = (fw * cos).sum(-1)
    im = (fw * sin).sum(-1)
    if wavelength is not None and not neutron:
        fp, fpp = anomalous_terms(crystals.species, wavelength, dtype)  # (B,N)
        wp = (fp * weight)[:, None, :] * debye
        wpp = (fpp * weight)[:, None, :] * debye
        re = re + (wp * cos).sum(-1) - (wpp * sin).sum(-1)
        im = im + (wp * sin).sum(-1) + (wpp * cos).sum(-1)
    return re, im


def structure_factor_squared(
    crystals: CrystalBatch,
    hkl: Tensor,
    s2: Tensor,
    **kw: object,
) -> Tensor:
    """|F|² (B,R); see :func:`structure_factor` for the arguments."""
    re, im = structure_factor(crystals, hkl, s2, **kw)  # type: ignore[arg-type]
    return re * re + im * im
