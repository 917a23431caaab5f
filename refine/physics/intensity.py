"""Intensity corrections: Lorentz–polarisation and March–Dollase preferred orientation."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def polarisation_factor(
    two_theta_rad: Tensor, fraction: float = 0.5, monochromator_two_theta: float | None = None
) -> Tensor:
    """Polarisation P(2θ) = K + (1 − K)·cos²2θ·cos²2θ_m (GSAS-II "Polariz." K; 2θ_m of a monochromator).

    K = 0.5 with no monochromator gives the unpolarised (1 + cos²2θ)/2; K → 1 a synchrotron beam polarised
    perpendicular to the diffraction plane (no loss).
    """
    c2 = torch.cos(two_theta_rad) ** 2
    if monochromator_two_theta is not None:
        c2 = c2 * math.cos(math.radians(monochromator_two_theta)) ** 2
    return fraction + (1.0 - fraction) * c2


def lorentz_factor(two_theta_rad: Tensor) -> Tensor:
    """Powder Lorentz factor 1/(sin²θ cosθ) (Bragg–Brentano and Debye–Scherrer alike)."""
    theta = 0.5 * two_theta_rad
    return 1.0 / (torch.sin(theta) ** 2 * torch.cos(theta))


def lorentz_polarisation(
    two_theta_rad: Tensor,
    fraction: float = 0.5,
    monochromator_two_theta: float | None = None,
    neutron: bool = False,
) -> Tensor:
    """LP = P(2θ)/(sin²θ cosθ); P = 1 for neutrons. 2θ in radians."""
    lor = lorentz_factor(two_theta_rad)
    if neutron:
        return lor
    return lor * polarisation_factor(two_theta_rad, fraction, monochromator_two_theta)


def march_dollase(g: Tensor, axis: Tensor, ratio: Tensor) -> Tensor:
    """March–Dollase factor (r² cos²α + sin²α / r)^(−3/2) per reflection.

    g: (B,R,3) reciprocal vectors (Å⁻¹); axis: (B,3) reciprocal vector of the preferred-orientation axis;
    ratio: (B,) r (1 = random). Every reflection of a P1 enumeration is treated individually, so no average over
    equivalents is needed.
    """
    gn = g / torch.linalg.norm(g, dim=-1, keepdim=True).clamp_min(1e-30)
    an = axis / torch.linalg.norm(axis, dim=-1, keepdim=True)
    c2 = ((gn * an[:, None, :]).sum(-1)) ** 2
    r = ratio[:, None]
    return (r * r * c2 + (1.0 - c2) / r) ** -1.5
