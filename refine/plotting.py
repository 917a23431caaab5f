"""The classic Rietveld plot: observed points, calculated line, difference curve, reflection ticks per phase."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .results import RefinementResult


def plot_fit(
    result: RefinementResult, ax: Axes | None = None, show_background: bool = True, **_: Any
) -> Axes:
    """Draw the fit of ``result`` on ``ax`` (a new figure's Axes when None) and return the Axes.

    Observed: points; calculated: line; background: dotted; difference (obs − calc): below the pattern;
    reflection ticks: one row per phase under the pattern. x axis in degrees 2θ.
    """
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 5.5))
        ax = fig.add_subplot(1, 1, 1)
    tt = result.two_theta
    obs = result.observed
    calc = result.calculated
    diff = result.difference
    ymax = float(np.nanmax(np.concatenate([obs, calc])))
    ymin = float(np.nanmin(np.concatenate([obs, calc])))
    span = max(ymax - ymin, 1e-12)
    ax.plot(tt, obs, "o", ms=1.6, mfc="none", mec="tab:blue", mew=0.6, label="observed")
    ax.plot(tt, calc, "-", color="tab:red", lw=0.8, label="calculated")
    if show_background:
        ax.plot(tt, result.background_curve, ":", color="0.4", lw=0.8, label="background")
    n_ph = len(result.phases)
    tick_h = 0.04 * span
    colours = ["tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive"]
    base = ymin - 0.02 * span
    for k, ph in enumerate(result.phases):
        y0 = base - (k + 1) * 1.3 * tick_h
        ax.vlines(
            ph.ticks,
            y0,
            y0 + tick_h,
            color=colours[k % len(colours)],
            lw=0.6,
            label=f"{ph.name} ({ph.spacegroup})",
        )
    diff_offset = base - (n_ph + 1) * 1.3 * tick_h - float(np.nanmax(diff)) - 0.02 * span
    ax.plot(tt, diff + diff_offset, "-", color="tab:gray", lw=0.6, label="obs − calc")
    ax.axhline(diff_offset, color="0.7", lw=0.4)
    ax.set_xlim(float(tt[0]), float(tt[-1]))
    ax.set_xlabel("2θ (degrees)")
    ax.set_ylabel("intensity")
    ax.set_title(
        f"Rwp {100 * result.rwp:.2f} %  Rp {100 * result.rp:.2f} %  GoF {result.gof:.2f}", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    return ax
