"""HTML pieces of the solve report and the notebook view: page skeleton, style, tables.

Everything is inline (CSS in a <style> element, images as data URIs): the page opens offline.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px;
       color: #1b1b1b; max-width: 1150px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; border-bottom: 1px solid #ccc;
       padding-bottom: 3px; margin-top: 28px; }
.sub { color: #555; font-size: 13px; }
.headline { font-size: 15px; background: #eef4fb; border-left: 4px solid #2c6fb7; padding: 8px 12px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { border: 1px solid #d0d0d0; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.best td { background: #fff7d6; }
.views { display: flex; flex-wrap: wrap; gap: 12px; }
.view { border: 1px solid #ddd; padding: 6px; font-size: 12px; text-align: center; }
pre { background: #f7f7f7; padding: 8px; font-size: 11.5px; overflow-x: auto; }
.note { color: #8a5300; }
img.fit { max-width: 100%; }
"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def pct(x: float | None) -> str:
    """A fraction as percent with 2 decimals (``nan`` when missing)."""
    return f"{100 * x:.2f}" if x is not None and math.isfinite(x) else "nan"


def num(x: float | None, fmt: str = ".2f") -> str:
    return format(x, fmt) if x is not None and math.isfinite(x) else "nan"


def candidates_table(candidates: list[Any], top: int | None = None) -> str:
    """Ranked candidates: rank, formula, space group, cell (Å, degrees, Å³), Rwp/Rp (%), GoF, source."""
    head = (
        "<tr><th>rank</th><th class='l'>formula</th><th class='l'>space group</th><th>a (Å)</th><th>b (Å)</th>"
        "<th>c (Å)</th><th>α (°)</th><th>β (°)</th><th>γ (°)</th><th>V (Å³)</th><th>Rwp %</th><th>Rp %</th>"
        "<th>GoF</th><th class='l'>source</th></tr>"
    )
    rows = []
    for c in candidates[: top or len(candidates)]:
        lat = c.structure.lattice
        cls = " class='best'" if c.rank == 1 else ""
        rows.append(
            f"<tr{cls}><td>{c.rank}</td><td class='l'>{esc(c.formula)}</td><td class='l'>{esc(c.spacegroup)}</td>"
            f"<td>{lat.a:.4f}</td><td>{lat.b:.4f}</td><td>{lat.c:.4f}</td>"
            f"<td>{lat.alpha:.2f}</td><td>{lat.beta:.2f}</td><td>{lat.gamma:.2f}</td><td>{lat.volume:.2f}</td>"
            f"<td>{pct(c.rwp)}</td><td>{pct(c.rp)}</td><td>{num(c.gof)}</td>"
            f"<td class='l'>{esc(c.provenance.get('source', '?'))}</td></tr>"
        )
    return f"<table class='xrd-candidates'>{head}{''.join(rows)}</table>"


def messages_list(messages: list[str]) -> str:
    if not messages:
        return ""
    return "<ul>" + "".join(f"<li class='note'>{esc(m)}</li>" for m in messages) + "</ul>"


def key_value_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th class='l'>{esc(k)}</th><td class='l'>{esc(v)}</td></tr>" for k, v in items)
    return f"<table class='xrd-kv'>{rows}</table>"


def json_block(data: Any) -> str:
    return "<pre>" + esc(json.dumps(data, indent=2, default=str)) + "</pre>"


def page(title: str, body: str) -> str:
    """A complete HTML5 document with the inline style."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
