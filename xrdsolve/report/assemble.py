"""Assemble the self-contained solve report (report.html) from a Solution."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import template as t
from .figures import fit_figure, png_data_uri, structure_figure
from .provenance import provenance

log = logging.getLogger(__name__)


def _fit_section(solution: Any) -> str:
    best = solution.best
    if best is None or best.result is None:
        return "<h2>Rietveld fit</h2><p>No refined candidate to show.</p>"
    from xrdsolve.refine.html_repr import instrument_html, phases_html, sites_html, statistics_html

    res = best.result
    return (
        "<h2>Rietveld fit of the best candidate</h2>"
        + statistics_html(res)
        + phases_html(res)
        + "<h3>Sites</h3>"
        + sites_html(res)
        + "<h3>Instrument and profile</h3>"
        + instrument_html(res)
        + f"<img class='fit' alt='Rietveld plot: observed, calculated, difference, reflection ticks' "
        f"src='{png_data_uri(fit_figure(res), dpi=110)}'/>"
    )


def _structure_section(solution: Any, top: int, axis: str) -> str:
    views = []
    for c in solution.candidates[:top]:
        title = f"#{c.rank} {c.formula} {c.spacegroup}"
        try:
            uri = png_data_uri(structure_figure(c.structure, axis=axis, title=title), dpi=90)
        except Exception as exc:  # one odd structure must not sink the report
            log.warning("structure view of rank %d failed: %s", c.rank, exc)
            continue
        views.append(
            f"<div class='view'><img alt='structure of rank {c.rank}' src='{uri}'/><br/>"
            f"rank {c.rank}: Rwp {t.pct(c.rwp)} %</div>"
        )
    if not views:
        return ""
    return (
        f"<h2>Structures of the top {len(views)} (unit cell projected along {t.esc(axis)})</h2>"
        f"<div class='views'>{''.join(views)}</div>"
    )


def _provenance_section(prov: dict[str, Any]) -> str:
    w = prov["weights"]
    items = [
        ("xrdsolve version", prov["xrdsolve_version"]),
        ("model weights", w.get("id", "none shipped") if w.get("available") else "none shipped"),
        ("weights training commit", w.get("git_commit", "")),
        ("generator used in this solve", "yes" if prov["generator_used"] else f"no {prov['generator_note']}"),
        ("seed", prov["seed"]),
        ("python / torch", f"{prov['python']} / {prov['torch']}"),
        ("pattern file", prov["source"]),
        ("report written (UTC)", prov["created_utc"]),
    ]
    return (
        "<h2>Provenance</h2>" + t.key_value_table(items) + "<h3>Options</h3>" + t.json_block(prov["options"])
    )


def render_report(solution: Any, top: int = 3, axis: str = "c", table_rows: int = 20) -> str:
    """The report as one HTML string: headline, ranked candidates, best fit, structure views, what was
    tried, provenance. ``top``: structures drawn; ``axis``: projection axis ("a", "b" or "c")."""
    prov = provenance(solution)
    source = prov["source"] or "pattern"
    best = solution.best
    if best is not None:
        headline = (
            f"Best: <b>{t.esc(best.formula)}</b> in <b>{t.esc(best.spacegroup)}</b>, "
            f"Rwp <b>{t.pct(best.rwp)} %</b>, Rp {t.pct(best.rp)} %, GoF {t.num(best.gof)}"
        )
    else:
        headline = "No candidate fitted."
    body = [
        "<h1>xrdsolve structure solution</h1>",
        f"<div class='sub'>{t.esc(source)} · composition {t.esc(solution.options.get('composition', '?'))}"
        f" · {len(solution.candidates)} ranked candidates</div>",
        f"<p class='headline'>{headline}</p>",
        t.messages_list(solution.messages),
        "<h2>Ranked candidates</h2>",
        t.candidates_table(solution.candidates, table_rows),
        _fit_section(solution),
        _structure_section(solution, top, axis),
        "<h2>What was tried</h2>",
        t.json_block(solution.tried),
        _provenance_section(prov),
    ]
    return t.page(f"xrdsolve report: {Path(source).name}", "".join(body))


def write_report(solution: Any, path: str | Path, top: int = 3, axis: str = "c") -> Path:
    """Write :func:`render_report` to ``path`` (parents created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render_report(solution, top=top, axis=axis), encoding="utf-8")
    tmp.replace(out)
    return out
