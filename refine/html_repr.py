"""HTML rendering of a RefinementResult for notebooks and reports: statistics, phases, the fit plot inline.

Self-contained: the plot is embedded as a base64 PNG (no files, no network).
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import RefinementResult, Value


def format_esd(value: float, esd: float, digits: int = 4) -> str:
    """Crystallographic notation: 4.59370 ± 0.00012 → ``4.59370(12)``; fixed values (esd 0) with ``digits``
    decimals; non-finite → ``nan``."""
    if not math.isfinite(value):
        return "nan"
    if not math.isfinite(esd) or esd <= 0:
        return f"{value:.{digits}f}"
    decimals = max(0, 1 - math.floor(math.log10(esd)))
    if round(esd * 10**decimals) >= 20:  # keep esd to 1 significant digit above 19 units
        decimals = max(0, decimals - 1)
    decimals = min(decimals, 8)
    units = round(esd * 10**decimals)
    return f"{value:.{decimals}f}({units})"


def _v(v: Value, digits: int = 4) -> str:
    return format_esd(v.value, v.esd, digits)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}" if math.isfinite(x) else "nan"


def fit_png_base64(result: RefinementResult, dpi: int = 90, size: tuple[float, float] = (9.0, 5.0)) -> str:
    """The Rietveld plot of ``result`` as base64-encoded PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    result.plot(ax=fig.add_subplot(1, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def statistics_html(result: RefinementResult) -> str:
    """One-row table of the agreement factors (percent) and fit bookkeeping."""
    cells = [
        ("Rwp %", _pct(result.rwp)),
        ("Rp %", _pct(result.rp)),
        ("Rexp %", _pct(result.rexp)),
        ("χ²", f"{result.chi2:.4g}"),
        ("GoF", f"{result.gof:.3f}"),
        ("points", str(result.n_obs)),
        ("parameters", str(result.n_params)),
        ("converged", "yes" if result.converged else "no"),
        ("status", html.escape(str(result.status))),
        ("time (s)", f"{result.seconds:.1f}"),
    ]
    head = "".join(f"<th>{k}</th>" for k, _ in cells)
    row = "".join(f"<td>{v}</td>" for _, v in cells)
    return f'<table class="xrd-stats"><tr>{head}</tr><tr>{row}</tr></table>'


def phases_html(result: RefinementResult) -> str:
    """One row per phase: lattice (Å, degrees) and volume (Å³) with esds, weight fraction (%), R_Bragg (%)."""
    rows = []
    for ph in result.phases:
        lat = ph.lattice
        wf = ph.weight_fraction
        rows.append(
            "<tr>"
            f"<td>{html.escape(ph.name)}</td><td>{html.escape(ph.formula)}</td>"
            f"<td>{html.escape(ph.spacegroup)} ({ph.spacegroup_number})</td>"
            + "".join(f"<td>{_v(lat[k])}</td>" for k in ("a", "b", "c"))
            + "".join(f"<td>{_v(lat[k], 3)}</td>" for k in ("alpha", "beta", "gamma"))
            + f"<td>{_v(ph.volume, 3)}</td>"
            f"<td>{format_esd(100 * wf.value, 100 * wf.esd, 2)}</td><td>{_pct(ph.r_bragg)}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>phase</th><th>formula</th><th>space group</th><th>a (Å)</th><th>b (Å)</th><th>c (Å)</th>"
        "<th>α (°)</th><th>β (°)</th><th>γ (°)</th><th>V (Å³)</th><th>wt %</th><th>R<sub>Bragg</sub> %</th></tr>"
    )
    return f'<table class="xrd-phases">{head}{"".join(rows)}</table>'


def sites_html(result: RefinementResult, phase: int = 0) -> str:
    """The refined sites of one phase: label, Wyckoff, x y z, B_iso (Å²), occupancies."""
    rows = []
    for s in result.phases[phase].sites:
        occ = ", ".join(f"{html.escape(el)} {_v(v, 3)}" for el, v in s.occupancy.items())
        rows.append(
            f"<tr><td>{html.escape(s.label)}</td><td>{html.escape(s.wyckoff)}</td>"
            + "".join(f"<td>{_v(c, 4)}</td>" for c in s.xyz)
            + f"<td>{_v(s.b_iso, 2)}</td><td>{occ}</td></tr>"
        )
    head = (
        "<tr><th>site</th><th>Wyckoff</th><th>x</th><th>y</th><th>z</th><th>B<sub>iso</sub> (Å²)</th>"
        "<th>occupancy</th></tr>"
    )
    return f'<table class="xrd-sites">{head}{"".join(rows)}</table>'


def instrument_html(result: RefinementResult) -> str:
    """Instrument and profile values with esds (zero in degrees, displacement μm, U V W centideg²)."""
    items = [(k, _v(v)) for k, v in result.instrument.items()]
    for ph in result.phases:
        items += [(f"{ph.name}.{k}", _v(v)) for k, v in ph.profile.items()]
    head = "".join(f"<th>{html.escape(k)}</th>" for k, _ in items)
    row = "".join(f"<td>{v}</td>" for _, v in items)
    return f'<table class="xrd-inst"><tr>{head}</tr><tr>{row}</tr></table>'


def result_html(result: RefinementResult, plot: bool = True, dpi: int = 90) -> str:
    """The notebook view of a RefinementResult: statistics, phases, sites, instrument, inline fit plot."""
    parts = [
        "<div class='xrdsolve-result'><b>Rietveld refinement</b>",
        statistics_html(result),
        phases_html(result),
    ]
    for k, ph in enumerate(result.phases):
        parts.append(
            f"<details><summary>sites of {html.escape(ph.name)}</summary>{sites_html(result, k)}</details>"
        )
    parts.append(f"<details><summary>instrument and profile</summary>{instrument_html(result)}</details>")
    if plot:
        parts.append(
            f'<img alt="Rietveld plot" src="data:image/png;base64,{fit_png_base64(result, dpi=dpi)}"/>'
        )
    parts.append("</div>")
    return "".join(parts)


def repr_html(result: Any) -> str:
    """Entry point for ``RefinementResult._repr_html_``."""
    return result_html(result)
