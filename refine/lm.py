"""Batched Levenberg–Marquardt least squares with bounds, per-candidate damping and divergence detection.

Minimises ``χ²_b = Σ_i r_bi(θ_b)²`` independently for every candidate b of a batch, in one tensor program:
``residual_fn(theta (B,P)) -> (B,M)`` returns *weighted* residuals ((obs − calc)/σ, zero where a point is
excluded). Candidates must be independent (r_b depends only on θ_b); the Jacobian is then obtained with one
forward-mode product per parameter column for the whole batch.

Bounds are enforced by projection; a parameter pinned at a bound is dropped from that step's normal matrix.
A candidate whose χ² becomes NaN/inf, or whose Jacobian is not finite, is frozen at its last good values and
flagged ``diverged``; it never affects the others.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

log = logging.getLogger(__name__)

ResidualFn = Callable[[Tensor], Tensor]
#: ``jacobian_fn(theta (B',P), columns (P,) bool, index (B',) | None) -> (B',M,P)``: a model-specific Jacobian
#: of the residuals of the candidates ``index`` (None: all, in order).
JacobianFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


@dataclass
class LMResult:
    """Outcome per candidate. ``covariance`` is (JᵀJ)⁻¹ × GoF² on the free parameters (zero rows elsewhere)."""

    theta: Tensor  # (B,P)
    chi2: Tensor  # (B,)
    chi2_start: Tensor  # (B,)
    n_obs: Tensor  # (B,) number of observations
    n_free: Tensor  # (B,) number of refined parameters
    iterations: Tensor  # (B,) long
    converged: Tensor  # (B,) bool
    diverged: Tensor  # (B,) bool
    singular: Tensor  # (B,) bool — normal matrix (numerically) singular at the end
    covariance: Tensor  # (B,P,P)
    esd: Tensor  # (B,P)
    correlation: Tensor  # (B,P,P)
    #: the iterations stopped at the caller's deadline (candidates not converged by then are "deadline")
    timed_out: bool = False
    #: wall seconds of the last iteration (or the estimate given, when none ran): what the next one should take
    iteration_seconds: float = 0.0

    @property
    def gof(self) -> Tensor:
        """Goodness of fit √(χ²/(N−P)) per candidate."""
        dof = (self.n_obs - self.n_free).clamp_min(1).to(self.chi2.dtype)
        return (self.chi2 / dof).sqrt()

    def status(self, b: int) -> str:
        if bool(self.diverged[b]):
            return "diverged"
        if bool(self.singular[b]):
            return "singular"
        if bool(self.converged[b]):
            return "converged"
        return "deadline" if self.timed_out else "max_iter"


def stacked_unit_tangents(
    theta: Tensor, columns: Sequence[int], max_rows: int
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Chunks of parameter columns for stacked forward-mode AD: yields ``(chunk, rep, tangent)`` where
    ``rep`` is ``theta`` (B,P) repeated once per column of the chunk (rows j·B + b) and ``tangent`` the
    matching unit tangents (1 in column ``chunk[j]`` for rows j·B … (j+1)·B − 1). At most ``max_rows``
    stacked rows per chunk (at least one column)."""
    bsz = theta.shape[0]
    per = max(1, max_rows // max(bsz, 1))
    for start in range(0, len(columns), per):
        chunk = list(columns[start : start + per])
        rep = theta.detach().repeat(len(chunk), 1)
        tangent = torch.zeros_like(rep)
        for j, c in enumerate(chunk):
            tangent[j * bsz : (j + 1) * bsz, c] = 1.0
        yield chunk, rep, tangent


def jacobian(
    residual_fn: ResidualFn,
    theta: Tensor,
    columns: Tensor | None = None,
    method: str = "forward",
    max_rows: int = 256,
) -> Tensor:
    """(B,M,P) Jacobian of the weighted residuals w.r.t. theta (B,P) for independent candidates.

    ``columns`` (P,) bool limits the work to the parameters that are free in at least one candidate.
    ``method``:
    * "batched" — forward-mode AD on a stacked batch: the candidates are repeated once per column with a
      one-hot tangent, so one forward pass gives many columns; needs ``residual_fn(theta, index)`` where
      ``index`` (B',) maps each row of a stacked theta (B',P) to its candidate. ``max_rows`` caps B'.
    * "forward" — forward-mode AD, one pass per column (any residual_fn);
    * "central" — central finite differences (relative step 1e-6).
    """
    bsz, p = theta.shape
    cols = torch.arange(p) if columns is None else torch.nonzero(columns).flatten()
    out: Tensor | None = None

    def store(k: int, col: Tensor) -> None:
        nonlocal out
        if out is None:
            out = torch.zeros(bsz, col.shape[1], p, dtype=theta.dtype)
        out[:, :, k] = col.detach()

    col_list = cols.tolist()
    if method == "batched":
        base_index = torch.arange(bsz)
        for chunk, rep, tangent in stacked_unit_tangents(theta, col_list, max_rows):
            n = len(chunk)
            with fwad.dual_level():
                dual = fwad.make_dual(rep, tangent)
                res = residual_fn(dual, base_index.repeat(n))  # type: ignore[call-arg]
                tan = fwad.unpack_dual(res).tangent
            if tan is None:
                tan = torch.zeros(rep.shape[0], res.shape[1], dtype=theta.dtype)
            for j, k in enumerate(chunk):
                store(k, tan[j * bsz : (j + 1) * bsz])
    else:
        for k in col_list:
            tangent = torch.zeros_like(theta)
            tangent[:, k] = 1.0
            if method == "forward":
                with fwad.dual_level():
                    res = residual_fn(fwad.make_dual(theta.detach(), tangent))
                    col = fwad.unpack_dual(res).tangent
                if col is None:
                    col = torch.zeros_like(res)
            elif method == "central":
                h = 1e-6 * theta[:, k].abs().clamp_min(1e-3)
                step = tangent * h[:, None]
                col = (residual_fn(theta + step) - residual_fn(theta - step)) / (2 * h[:, None])
            else:
                raise ValueError(f"unknown Jacobian method {method!r}")
            store(k, col)
    if out is None:
        r = residual_fn(theta)
        return torch.zeros(bsz, r.shape[1], p, dtype=theta.dtype)
    return out


def _chi2(residual_fn: ResidualFn, theta: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        r = residual_fn(theta)
    chi2 = (r * r).sum(dim=1)
    chi2 = torch.where(torch.isfinite(chi2), chi2, torch.full_like(chi2, float("inf")))
    return chi2, r


def _solve(a: Tensor, g: Tensor) -> Tensor:
    """Solve a δ = g per candidate; falls back to least squares where Cholesky fails."""
    chol, info = torch.linalg.cholesky_ex(a)
    delta = torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)
    bad = info != 0
    if bool(bad.any()):
        delta[bad] = torch.linalg.lstsq(a[bad], g[bad].unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
    return delta


def levenberg_marquardt(
    residual_fn: ResidualFn,
    theta0: Tensor,
    free: Tensor | None = None,
    lower: Tensor | None = None,
    upper: Tensor | None = None,
    n_obs: Tensor | None = None,
    max_iter: int = 50,
    lambda0: float = 1e-3,
    ftol: float = 1e-6,
    xtol: float = 1e-9,
    max_tries: int = 8,
    jacobian_method: str = "forward",
    max_jacobian_rows: int = 256,
    covariance: bool = True,
    jacobian_fn: JacobianFn | None = None,
    damped_limit: float = 0.1,
    residual_takes_index: bool = False,
    deadline: float | None = None,
    iteration_seconds: float = 0.0,
    closing_seconds: float | None = None,
) -> LMResult:
    """Batched bounded Levenberg–Marquardt (Marquardt diagonal scaling, projection onto bounds).

    With ``residual_takes_index`` the residual function is called as ``residual_fn(theta_rows, index)`` for
    the candidates still iterating only (and ``jacobian_fn`` likewise), so converged candidates cost nothing.

    theta0 (B,P); free (B,P) bool (default all); lower/upper (B,P) (default ±inf); n_obs (B,) observation
    counts for GoF (default: M). ``jacobian_fn(theta_rows, cols, index)`` replaces the AD Jacobian (e.g. an
    analytic one) and returns only the columns ``cols`` (P,) bool, (B',M,C) in column order; the residuals
    alone decide whether a step is accepted. Converges when, for a step taken with damping
    λ ≤ ``damped_limit``, the relative χ² decrease of an accepted step is below ``ftol``, when the step is
    below ``xtol`` relative to the parameters, or when no damping gives a decrease.
    With ``deadline`` (a ``time.perf_counter()`` value) no new iteration starts that would end after it, judged
    by the duration of the previous one (``iteration_seconds`` before the first: e.g. that of an earlier stage);
    with ``covariance`` room is also kept for the closing Jacobian (about one more iteration). Every accepted
    step lowered χ², so the parameters returned are the best found so far (``timed_out`` is then set).
    ``closing_seconds`` estimates the closing Jacobian (over every free column): when it would end after the
    deadline the covariance comes from each candidate's last normal matrix, or, for a candidate that has
    none (no iteration ran), its esds are NaN (not computed) rather than the deadline being overrun.
    """
    theta = theta0.detach().clone()
    bsz, p = theta.shape
    dtype = theta.dtype
    free = torch.ones(bsz, p, dtype=torch.bool) if free is None else free.clone()
    lower = torch.full_like(theta, -torch.inf) if lower is None else lower.to(dtype)
    upper = torch.full_like(theta, torch.inf) if upper is None else upper.to(dtype)
    theta = torch.minimum(torch.maximum(theta, lower), upper)
    chi2, r0 = _chi2(residual_fn, theta)
    r_cur = r0.clone()
    chi2_start = chi2.clone()
    if n_obs is None:
        n_obs = torch.full((bsz,), r0.shape[1], dtype=torch.long)
    lam = torch.full((bsz,), lambda0, dtype=dtype)
    diverged = ~torch.isfinite(chi2)
    converged = ~free.any(dim=1)  # nothing to refine: done before the first iteration (costs nothing)
    iterations = torch.zeros(bsz, dtype=torch.long)

    timed_out = False
    # JᵀJ of each candidate's latest iteration (free columns): the covariance when the deadline stops the run
    normal = theta.new_zeros(bsz, p, p)
    has_normal = torch.zeros(bsz, dtype=torch.bool)
    last_iteration_s = iteration_seconds  # the next iteration is expected to take as long as the last one
    room = 2.0 if covariance else 1.0  # iterations' worth of time needed before the deadline
    for _ in range(max_iter):
        active = ~(converged | diverged)
        if not bool(active.any()):
            break
        started = time.perf_counter()
        if deadline is not None and started + room * last_iteration_s > deadline:
            timed_out = True
            log.info("LM: deadline reached with %d candidate(s) still iterating", int(active.sum()))
            break
        cols = (free & active[:, None]).any(dim=0)
        # the normal equations are built for the iterating candidates and the free columns only
        act_idx = torch.nonzero(active).flatten()
        col_idx = torch.nonzero(cols).flatten()
        if jacobian_fn is not None:
            jac_a = jacobian_fn(theta[act_idx], cols, act_idx)
        else:
            jac_a = jacobian(residual_fn, theta, cols, jacobian_method, max_jacobian_rows)[act_idx][
                :, :, col_idx
            ]
        r_a = torch.nan_to_num(r_cur[act_idx], nan=0.0, posinf=0.0, neginf=0.0)
        jac_t = jac_a.transpose(1, 2)
        a_act = torch.bmm(jac_t, jac_a)  # (B',C,C) JᵀJ
        g_act = torch.bmm(jac_t, r_a.unsqueeze(-1)).squeeze(-1)  # (B',C) Jᵀr
        # a non-finite Jacobian entry makes its column's diagonal of JᵀJ non-finite
        jac_ok = torch.isfinite(a_act).flatten(1).all(dim=1) & torch.isfinite(g_act).all(dim=1)
        if not bool(jac_ok.all()):
            log.info("LM: %d candidate(s) with non-finite Jacobian frozen", int((~jac_ok).sum()))
            diverged[act_idx[~jac_ok]] = True
            active[act_idx[~jac_ok]] = False
            a_act[~jac_ok] = 0.0
            g_act[~jac_ok] = 0.0
        g = theta.new_zeros(bsz, p)
        g[act_idx[:, None], col_idx[None, :]] = g_act
        if covariance and deadline is not None:
            normal[act_idx] = 0.0
            normal[act_idx[:, None, None], col_idx[None, :, None], col_idx[None, None, :]] = a_act
            has_normal[act_idx] = True
        # parameters pinned at a bound with the gradient pushing outwards are held this step
        at_low = (theta <= lower) & (g > 0)
        at_high = (theta >= upper) & (g < 0)
        step_free = free & ~at_low & ~at_high & active[:, None]
        a = theta.new_zeros(bsz, p, p)
        a[act_idx[:, None, None], col_idx[None, :, None], col_idx[None, None, :]] = a_act
        held = step_free.to(dtype)
        a = a * held[:, :, None] * held[:, None, :]  # = (J·diag(held))ᵀ(J·diag(held))
        g = g * step_free
        diag = torch.diagonal(a, dim1=-2, dim2=-1)
        dscale = torch.maximum(diag, 1e-12 * diag.amax(dim=1, keepdim=True).clamp_min(1e-30))
        dscale = torch.where(step_free, dscale, torch.ones_like(dscale))
        a_fixed = torch.diag_embed((~step_free).to(dtype))
        pending = active.clone()
        iterations += active.long()
        for _try in range(max_tries):
            if not bool(pending.any()):
                break
            damped = a + torch.diag_embed(lam[:, None] * dscale) * step_free[:, :, None] + a_fixed
            delta = -_solve(damped, g)
            delta = torch.nan_to_num(delta) * step_free
            trial = torch.minimum(torch.maximum(theta + delta, lower), upper)
            trial = torch.where(pending[:, None], trial, theta)
            if residual_takes_index:
                pidx = torch.nonzero(pending).flatten()
                c_sub, r_sub = _chi2(functools.partial(residual_fn, index=pidx), trial[pidx])  # type: ignore[call-arg]
                chi2_new = torch.full_like(chi2, float("inf"))
                r_new = torch.zeros_like(r_cur)
                chi2_new[pidx], r_new[pidx] = c_sub, r_sub
            else:
                chi2_new, r_new = _chi2(residual_fn, trial)
            ok = pending & (chi2_new < chi2)
            r_cur[ok] = r_new[ok]
            if bool(ok.any()):
                rel = (chi2[ok] - chi2_new[ok]) / chi2[ok].clamp_min(1e-300)
                step = (trial[ok] - theta[ok]).abs()
                scale = theta[ok].abs() + 1e-6
                # a tiny decrease means convergence only for a Gauss–Newton-like step: under heavy damping
                # the steps are short whatever the distance to the minimum
                undamped = lam[ok] <= damped_limit
                small_step = (((step / scale).amax(dim=1) < xtol) | (rel < ftol)) & undamped
                theta[ok] = trial[ok]
                chi2[ok] = chi2_new[ok]
                lam[ok] = (lam[ok] / 5.0).clamp_min(1e-9)
                idx = torch.nonzero(ok).flatten()
                converged[idx[small_step]] = True
            rejected = pending & ~ok
            lam[rejected] = lam[rejected] * 8.0
            pending = rejected & (lam < 1e12)
        # no damping gave a decrease: we are at a (local) minimum within numerical precision
        stuck = active & ~converged & (lam >= 1e12)
        converged |= stuck
        last_iteration_s = time.perf_counter() - started

    n_free = free.sum(dim=1)
    if not covariance:
        zeros = torch.zeros(bsz, p, p, dtype=dtype)
        return LMResult(
            theta=theta,
            chi2=chi2,
            chi2_start=chi2_start,
            n_obs=n_obs,
            n_free=n_free,
            iterations=iterations,
            converged=converged & ~diverged,
            diverged=diverged,
            singular=torch.zeros(bsz, dtype=torch.bool),
            covariance=zeros,
            esd=torch.zeros(bsz, p, dtype=dtype),
            correlation=zeros.clone(),
            timed_out=timed_out,
            iteration_seconds=last_iteration_s,
        )
    no_room = (
        deadline is not None
        and closing_seconds is not None
        and time.perf_counter() + closing_seconds > deadline
    )
    usable = has_normal & torch.isfinite(normal).flatten(1).all(dim=1)
    not_computed = torch.zeros(bsz, dtype=torch.bool)
    if (timed_out or no_room) and bool(usable.all()):
        # out of time: the covariance from each candidate's last normal matrix (one step old, as GSAS-II's
        # esds come from its last cycle) instead of one more Jacobian (seconds for a large batch)
        a_end = normal
    elif no_room:  # no time for the closing Jacobian: the last normal matrix where there is one, else NaN
        n_missing = int((~usable).sum())
        log.info("LM: no time left for the closing Jacobian: esds of %d candidate(s) not computed", n_missing)
        not_computed = ~usable
        a_end = torch.where(usable[:, None, None], normal, torch.eye(p, dtype=dtype).expand(bsz, p, p))
    else:  # covariance at the solution
        cols = free.any(dim=0)
        if jacobian_fn is not None:
            jac_end = theta.new_zeros(bsz, r_cur.shape[1], p)
            jac_end[:, :, cols] = jacobian_fn(theta, cols, None)
        else:
            jac_end = jacobian(residual_fn, theta, cols, jacobian_method, max_jacobian_rows)
        jac_end = torch.nan_to_num(jac_end)
        a_end = torch.einsum("bmp,bmq->bpq", jac_end, jac_end)
    # a parameter held at a bound where it has no derivative (e.g. an asymmetry at 0) is fixed there:
    # esd 0, not a singular normal matrix
    flat = torch.diagonal(a_end, dim1=-2, dim2=-1) <= 0
    free = free & ~(flat & ((theta <= lower) | (theta >= upper)))
    held_free = free.to(dtype)
    a = a_end * held_free[:, :, None] * held_free[:, None, :]
    dof = (n_obs - n_free).clamp_min(1).to(dtype)
    gof2 = chi2 / dof
    diag = torch.diagonal(a, dim1=-2, dim2=-1)
    norm = torch.where(free & (diag > 0), diag.clamp_min(1e-300).rsqrt(), torch.zeros_like(diag))
    a_n = a * norm[:, :, None] * norm[:, None, :] + torch.diag_embed((~free | (diag <= 0)).to(dtype))
    evals = torch.linalg.eigvalsh(a_n)
    singular = (evals[:, 0] < 1e-12 * evals[:, -1].clamp_min(1e-300)) | (free & (diag <= 0)).any(dim=1)
    inv_n = torch.linalg.pinv(a_n, hermitian=True, rtol=1e-12)
    cov = inv_n * norm[:, :, None] * norm[:, None, :]
    cov = cov * free[:, :, None] * free[:, None, :] * gof2[:, None, None]
    esd = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(0).sqrt()
    denom = esd[:, :, None] * esd[:, None, :]
    corr = torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))
    corr = corr + torch.diag_embed((esd == 0).to(dtype))
    if bool(not_computed.any()):
        nan = torch.full((p, p), float("nan"), dtype=dtype)
        cov = torch.where(not_computed[:, None, None], nan, cov)
        corr = torch.where(not_computed[:, None, None], nan, corr)
        esd = torch.where(not_computed[:, None], float("nan"), esd)
        singular = singular & ~not_computed
    if bool(singular.any()):
        log.info("LM: %d candidate(s) have a singular normal matrix", int(singular.sum()))
    return LMResult(
        theta=theta,
        chi2=chi2,
        chi2_start=chi2_start,
        n_obs=n_obs,
        n_free=n_free,
        iterations=iterations,
        converged=converged & ~diverged,
        diverged=diverged,
        singular=singular & ~diverged,
        covariance=cov,
        esd=esd,
        correlation=corr,
        timed_out=timed_out,
        iteration_seconds=last_iteration_s,
    )
