"""``xrdsolve index``: unit cells (and space-group hints) from the peaks of a pattern."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from . import app

if TYPE_CHECKING:
    from xrdsolve.conditioning import Pattern
    from xrdsolve.conditioning.peaks import PeakList
    from xrdsolve.refine.indexing.extinctions import SpaceGroupHint


@app.command("index")
def index_cmd(
    file: Path = typer.Argument(..., help="Pattern file."),
    radiation: str | None = typer.Option(
        None,
        "--radiation",
        "-r",
        help="Radiation preset (CuKa, MoKa, ...) or wavelength in Å; overrides the file's.",
    ),
    max_volume: float = typer.Option(
        2000.0, "--max-volume", help="Largest primitive cell volume searched (Å³)."
    ),
    peaks: int = typer.Option(20, "--peaks", "-n", help="Number of lowest-angle peaks indexed."),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="2θ tolerance (°); default 0.03° at Cu Kα1, scaled with the wavelength."
    ),
    max_zero: float | None = typer.Option(
        None, "--max-zero", help="Largest zero shift searched (° 2θ); default 0.1° at Cu Kα1, scaled."
    ),
    unindexed: int = typer.Option(0, "--unindexed", help="Lines allowed to stay unindexed (impurities)."),
    systems: str | None = typer.Option(
        None, "--systems", help="Comma-separated crystal systems to search (default all but triclinic)."
    ),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Search time limit (s)."),
    weak_lines: bool = typer.Option(
        False,
        "--weak-lines",
        help="Pick peaks by their significance over the counting noise, weak lines included (noisy patterns).",
    ),
    fit_peaks: bool = typer.Option(
        False,
        "--fit-peaks/--no-fit-peaks",
        help="Fit each peak's position (Kα1/Kα2 doublet, unresolved pairs split) instead of taking the "
        "smoothed maximum.",
    ),
    top: int = typer.Option(5, "--top", help="Number of cells printed."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Index the pattern: ranked unit cells with de Wolff M20 and Smith–Snyder F_N, plus space-group hints."""
    from rich.console import Console
    from rich.table import Table

    from xrdsolve.conditioning import read_pattern
    from xrdsolve.conditioning.peakfit import indexing_lines
    from xrdsolve.errors import UsageError
    from xrdsolve.refine.indexing import IndexingOptions, Peaks, index_peaks
    from xrdsolve.refine.indexing.extinctions import admissible_hints

    pattern = read_pattern(file, radiation=radiation)
    if pattern.radiation is None:
        raise UsageError(f"{file}: no wavelength in the file; give --radiation")
    lines = indexing_lines(pattern, _pick_peaks(pattern, max(peaks * 2, 40), weak_lines), fit=fit_peaks)
    tt, height = lines.two_theta, lines.height
    wavelengths = list(pattern.radiation.wavelengths)
    if tt.size < 4:
        raise UsageError(f"{file}: only {tt.size} peaks found; at least 4 are needed to index")
    obs = Peaks.from_two_theta(tt, float(wavelengths[0]), height)
    opts = IndexingOptions(
        max_volume=max_volume,
        n_lines=peaks,
        tolerance=tolerance,
        max_zero_shift=max_zero,
        max_unindexed=unindexed,
        time_limit=time_limit,
    )
    if systems:
        chosen = tuple(s.strip().lower() for s in systems.split(",") if s.strip())
        opts = dataclasses.replace(opts, systems=chosen)  # type: ignore[arg-type]  # validated by index_peaks
    sols = index_peaks(obs, opts)[:top]
    hints = admissible_hints(sols[0], obs, max_hints=10) if sols else []
    if json_out:
        print(json.dumps({"cells": [s.as_dict() for s in sols], "spacegroups": [h.as_dict() for h in hints]}))
        return
    con = Console(highlight=False, width=160)
    con.print(
        f"[bold]{file}[/bold]: {obs.first(peaks).two_theta.size} peaks indexed at λ = {wavelengths[0]:.5f} Å"
    )
    if not sols:
        con.print(
            "no cell indexes the peaks within tolerance (try --unindexed 1, --tolerance or --max-volume)"
        )
        raise typer.Exit(1)
    table = Table(box=None, pad_edge=False)
    for col in ("#", "system", "a", "b", "c", "α", "β", "γ", "V (Å³)", "zero (°)", "M20", "F_N", "unind."):
        table.add_column(col, justify="right")
    for i, s in enumerate(sols, 1):
        table.add_row(
            str(i), f"{s.crystal_system} {s.centring_symbol}", f"{s.a:.5f}", f"{s.b:.5f}", f"{s.c:.5f}",
            f"{s.alpha:.3f}", f"{s.beta:.3f}", f"{s.gamma:.3f}", f"{s.volume:.2f}", f"{s.zero_shift:+.4f}",
            f"{s.m20:.1f}", f"F{s.f_lines}={s.f_n:.1f}", str(s.n_unindexed),
        )  # fmt: skip
    con.print(table)
    if hints:
        con.print("space groups compatible with the extinctions (best first): "
                  + ", ".join(_hint_label(h) for h in hints[:6]))  # fmt: skip


def _hint_label(hint: SpaceGroupHint) -> str:
    """``C2/m (12)``, with the weak lines it forbids when there are any."""
    if not hint.violations:
        return f"{hint.symbol} ({hint.number})"
    lines = "line" if hint.violations == 1 else "lines"
    return f"{hint.symbol} ({hint.number}; forbids {hint.violations} weak {lines} ≤ {100 * hint.violating_height:.0f} %)"


def _pick_peaks(pattern: Pattern, max_peaks: int, weak_lines: bool) -> PeakList:
    """The strongest peaks, or with ``weak_lines`` every significant one."""
    from xrdsolve.conditioning.peaks import find_peaks, significant_peaks

    if weak_lines:
        return significant_peaks(pattern, max_peaks=max_peaks)
    return find_peaks(pattern, max_peaks=max_peaks)
