"""Figures as embeddable PNG data URIs (no files, no network)."""

from __future__ import annotations

import base64
import io
from typing import Any


def png_data_uri(fig: Any, dpi: int = 110) -> str:
    """``data:image/png;base64,...`` of a matplotlib Figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def fit_figure(result: Any, size: tuple[float, float] = (10.0, 5.5)) -> Any:
    """The Rietveld plot (observed, calculated, background, difference, ticks) of a RefinementResult."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    result.plot(ax=fig.add_subplot(1, 1, 1))
    return fig


def structure_figure(structure: Any, axis: str = "c", title: str | None = None) -> Any:
    """A 4×4 inch figure of the projected unit cell (see :mod:`xrdsolve.report.structure_view`)."""
    from matplotlib.figure import Figure

    from .structure_view import plot_structure_projection

    fig = Figure(figsize=(4.0, 4.0), layout="constrained")
    plot_structure_projection(structure, axis=axis, ax=fig.add_subplot(1, 1, 1), title=title)
    return fig
