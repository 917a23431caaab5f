"""Publication-quality plot of a pattern (no pyplot state: pass an Axes or get a new Figure's)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .pattern import Pattern
from .peaks import PeakList


def plot_pattern(
    pattern: Pattern,
    ax: Axes | None = None,
    *,
    x: Literal["two_theta", "q", "d"] = "two_theta",
    show_sigma: bool = False,
    peaks: PeakList | None = None,
    label: str | None = None,
    color: str = "C0",
) -> Axes:
    """Plot intensity against 2θ (degrees), Q (Å⁻¹) or d (Å); returns the Axes.

    ``show_sigma`` draws a ±σ band; ``peaks`` marks picked peaks. Without ``ax`` a new
    :class:`~matplotlib.figure.Figure` (6.5 × 3.5 in) is created.
    """
    if ax is None:
        fig = Figure(figsize=(6.5, 3.5), layout="constrained")
        ax = fig.add_subplot()
    if x == "q":
        xs, xlabel = pattern.q(), r"$Q$ (Å$^{-1}$)"
    elif x == "d":
        xs, xlabel = pattern.d(), r"$d$ (Å)"
    else:
        xs, xlabel = pattern.two_theta, r"2$\theta$ (°)"
    y = pattern.intensity
    ax.plot(xs, y, lw=0.7, color=color, label=label)
    if show_sigma:
        ax.fill_between(xs, y - pattern.sigma, y + pattern.sigma, color=color, alpha=0.25, lw=0)
    if peaks is not None and len(peaks):
        px = peaks.two_theta
        if x == "q" and pattern.radiation is not None:
            px = 4 * np.pi * np.sin(np.deg2rad(px) / 2) / pattern.radiation.primary_wavelength
        elif x == "d":
            px = peaks.d
        py = np.interp(peaks.two_theta, pattern.two_theta, y)
        ax.plot(px, py + 0.03 * np.ptp(y), "v", ms=4, color="C3", label="peaks")
    ax.set_xlabel(xlabel)
    ylabel = "Intensity (counts)" if pattern.sigma_source.value == "counting" else "Intensity (arb. units)"
    ax.set_ylabel(ylabel)
    ax.set_xlim(float(np.min(xs)), float(np.max(xs)))
    ax.tick_params(direction="in", top=True, right=True)
    ax.minorticks_on()
    title = pattern.radiation.describe() if pattern.radiation is not None else None
    if title:
        ax.set_title(title, fontsize="small", loc="right")
    if label is not None or (peaks is not None and len(peaks)):
        ax.legend(frameon=False, fontsize="small")
    return ax
