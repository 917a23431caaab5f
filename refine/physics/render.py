"""Windowed pseudo-Voigt rendering on a uniform 2θ grid: one fused autograd function for all peaks.

A peak p is evaluated on K_p consecutive grid points x_j = x0_p + j·Δ (degrees from its centre):

    v_j = a_g · exp(−ln2 · k2 · x_j²) + a_l / (1 + k2 · x_j²),   k2 = (2/FWHM)²,

and added into a padded (rows, width) buffer at columns start_p … start_p + K_p − 1. Peaks are grouped into
buckets of equal K; a bucket is one dense (P_b, K) block, accumulated without building a per-point index:
``buffer.unfold(1, K, 1)`` is a (rows, width − K + 1, K) view whose element [r, s, j] is buffer[r, s + j], and
``index_put_(…, accumulate=True)`` adds each peak's row at (row, start) (accumulation on the CPU is serial, so
overlapping windows add correctly). The Gaussian term is evaluated only on the central columns of a bucket that
lie within ``GAUSS_CUT_FWHM`` FWHM of every peak's centre: beyond 4 FWHM it is below 2⁻⁶³ of its height
(exp(−64 ln2)), i.e. below float64 resolution.

Gradients (backward) and tangents (forward-mode ``jvp``) are analytic: with G = exp(−ln2 k2 x²),
L = 1/(1 + k2 x²) and Q = ln2·a_g·G + a_l·L² (G taken as 0 outside the Gaussian columns, as in the values),

    ∂v/∂a_g = G,   ∂v/∂a_l = L,   ∂v/∂x0 = −2 k2 x Q,   ∂v/∂k2 = −x² Q.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .compile import compile_enabled, maybe_compiled

_LN2 = math.log(2.0)
#: Half-width (in FWHM) beyond which the Gaussian part of a peak is not evaluated (exp(−4 ln2 ·16) = 2⁻⁶⁴).
GAUSS_CUT_FWHM = 4.0


@dataclass(frozen=True)
class Bucket:
    """Peaks rendered over the same number of points ``size``.

    index: (P_b,) positions of the peaks in the flat peak list; row: (P_b,) buffer row (crystal);
    start: (P_b,) buffer column of the first point; gauss: (c0, c1) columns where the Gaussian is evaluated.
    """

    index: Tensor
    row: Tensor
    start: Tensor
    size: int
    gauss: tuple[int, int]


@dataclass(frozen=True)
class RenderPlan:
    """Layout of a windowed rendering: grid step Δ (degrees), buffer shape and the buckets."""

    step: float
    rows: int
    width: int
    buckets: tuple[Bucket, ...]


def _offsets(plan: RenderPlan, like: Tensor) -> Tensor:
    kmax = max(b.size for b in plan.buckets)
    return torch.arange(kmax, dtype=like.dtype, device=like.device) * plan.step


def _scatter(out: Tensor, bucket: Bucket, values: Tensor) -> None:
    out.unfold(1, bucket.size, 1).index_put_((bucket.row, bucket.start), values, accumulate=True)


def _gather(grad: Tensor, bucket: Bucket) -> Tensor:
    return grad.unfold(1, bucket.size, 1)[bucket.row, bucket.start]


def _values_fused(x0: Tensor, k2: Tensor, a_g: Tensor, a_l: Tensor, offs: Tensor) -> Tensor:
    """(P,K) window values in one expression (for the compiled kernel, where the full-window exp is cheap)."""
    x = x0[:, None] + offs
    z = k2[:, None] * (x * x)
    return a_g[:, None] * torch.exp(-_LN2 * z) + a_l[:, None] / (1.0 + z)


def _values(
    x0: Tensor,
    k2: Tensor,
    a_g: Tensor,
    a_l: Tensor,
    bucket: Bucket,
    offs: Tensor,
    u: tuple[Tensor, Tensor],
) -> Tensor:  # (P_b, K) window values, computed in place as far as possible
    i = bucket.index
    if compile_enabled():
        return maybe_compiled(_values_fused)(x0[i], k2[i], a_g[i], a_l[i], offs[: bucket.size])
    # z = k2 x² = u², u = √k2·x0 + j·√k2·Δ (one broadcast product and one in-place add build the block)
    terms, j = u
    u0, du, ag, al = terms.index_select(1, i).unbind(0)
    z = (du[:, None] * j[: bucket.size]).add_(u0[:, None]).square_()
    c0, c1 = bucket.gauss
    g = torch.mul(z[:, c0:c1], -_LN2).exp_() if c1 > c0 else None
    val = torch.div(al[:, None], z.add_(1.0), out=z)  # a_l / (1 + k2 x²)
    if g is not None:
        val[:, c0:c1].addcmul_(g, ag[:, None])
    return val


def _u_terms(x0: Tensor, k2: Tensor, a_g: Tensor, a_l: Tensor, plan: RenderPlan) -> tuple[Tensor, Tensor]:
    """(4,P) rows √k2·x0, √k2·Δ, a_g, a_l per peak and the column numbers 0 … K−1 (for :func:`_values`)."""
    sk = torch.sqrt(k2)
    kmax = max(b.size for b in plan.buckets)
    terms = torch.stack([sk * x0, sk * plan.step, a_g, a_l])
    return terms, torch.arange(kmax, dtype=x0.dtype, device=x0.device)


def _geometry(x0: Tensor, k2: Tensor, bucket: Bucket, offs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x, x², L = 1/(1 + k2 x²) (P_b,K) and G = exp(−ln2 k2 x²) on the Gaussian columns of one bucket."""
    i = bucket.index
    kb = k2.index_select(0, i)[:, None]
    x = offs[: bucket.size].expand(i.shape[0], bucket.size).clone().add_(x0.index_select(0, i)[:, None])
    x2 = x * x
    lor = (x2 * kb).add_(1.0).reciprocal_()
    c0, c1 = bucket.gauss
    gau = (x2[:, c0:c1] * (-_LN2 * kb)).exp_()
    return x, x2, lor, gau


class _WindowedPseudoVoigt(torch.autograd.Function):
    @staticmethod
    def forward(x0: Tensor, k2: Tensor, a_g: Tensor, a_l: Tensor, plan: RenderPlan) -> Tensor:  # type: ignore[override]
        out = x0.new_zeros(plan.rows, plan.width)
        offs = _offsets(plan, x0)
        u = _u_terms(x0, k2, a_g, a_l, plan)
        for b in plan.buckets:
            _scatter(out, b, _values(x0, k2, a_g, a_l, b, offs, u))
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x0, k2, a_g, a_l, plan = inputs
        ctx.plan = plan
        ctx.save_for_backward(x0, k2, a_g, a_l)
        ctx.save_for_forward(x0, k2, a_g, a_l)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x0, k2, a_g, a_l = ctx.saved_tensors
        plan: RenderPlan = ctx.plan
        offs = _offsets(plan, x0)
        g_x0, g_k2, g_ag, g_al = (torch.zeros_like(x0) for _ in range(4))
        grad = grad.contiguous()
        for b in plan.buckets:
            i = b.index
            c0, c1 = b.gauss
            g = _gather(grad, b)
            x, x2, lor, gau = _geometry(x0, k2, b, offs)
            glor = g * lor
            g_al[i] = glor.sum(1)
            glor.mul_(lor)  # g L²
            s1, s2 = (glor * x).sum(1), (glor * x2).sum(1)
            gg = g[:, c0:c1] * gau
            g_ag[i] = gg.sum(1)
            t1, t2 = (gg * x[:, c0:c1]).sum(1), (gg * x2[:, c0:c1]).sum(1)
            al, ag = a_l[i], _LN2 * a_g[i]
            g_x0[i] = -2.0 * k2[i] * (al * s1 + ag * t1)
            g_k2[i] = -(al * s2 + ag * t2)
        needs = ctx.needs_input_grad
        return (
            g_x0 if needs[0] else None,
            g_k2 if needs[1] else None,
            g_ag if needs[2] else None,
            g_al if needs[3] else None,
            None,
        )

    @staticmethod
    def jvp(
        ctx: Any, t_x0: Tensor | None, t_k2: Tensor | None, t_ag: Tensor | None, t_al: Tensor | None, _: Any
    ) -> Tensor:  # type: ignore[override]
        x0, k2, a_g, a_l = ctx.saved_tensors
        plan: RenderPlan = ctx.plan
        offs = _offsets(plan, x0)
        out = x0.new_zeros(plan.rows, plan.width)
        for b in plan.buckets:
            i = b.index
            c0, c1 = b.gauss
            x, x2, lor, gau = _geometry(x0, k2, b, offs)
            # tangent of k2 x²: D = x² t_k2 + 2 k2 x t_x0; tv = L (t_al − a_l L D) + G (t_ag − ln2 a_g D)
            d = torch.zeros_like(x)
            if t_k2 is not None:
                d.addcmul_(x2, t_k2[i][:, None])
            if t_x0 is not None:
                d.addcmul_(x, (2.0 * k2[i] * t_x0[i])[:, None])
            tv = lor * d
            tv.mul_(-a_l[i][:, None])
            if t_al is not None:
                tv.add_(t_al[i][:, None])
            tv.mul_(lor)
            dg = d[:, c0:c1].mul_((-_LN2 * a_g[i])[:, None])
            if t_ag is not None:
                dg.add_(t_ag[i][:, None])
            tv[:, c0:c1].addcmul_(gau, dg)
            _scatter(out, b, tv)
        return out


def render_windows(x0: Tensor, k2: Tensor, a_g: Tensor, a_l: Tensor, plan: RenderPlan) -> Tensor:
    """The (rows, width) buffer of all windowed peaks; x0 (P,) offset (degrees) of each window's first point
    from the peak centre, k2 (P,) = (2/FWHM)² in deg⁻², a_g / a_l (P,) Gaussian / Lorentzian amplitudes."""
    out = _WindowedPseudoVoigt.apply(x0, k2, a_g, a_l, plan)
    return out  # type: ignore[no-any-return]
