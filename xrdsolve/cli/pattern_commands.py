"""``xrdsolve info``, ``xrdsolve convert`` and ``xrdsolve plot``: look at, convert and draw pattern files."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app

_RAD_HELP = "Radiation preset (CuKa, MoKa, ...) or wavelength(s) in Å; overrides the file's."
_WL_HELP = "Wavelength in Å (same as --radiation with a number)."
_BANK_HELP = "Bank / scan / range / data block to read (1-based; default the first)."


def _radiation(radiation: str | None, wavelength: float | None) -> str | float | None:
    if radiation is not None and wavelength is not None:
        raise typer.BadParameter("give --radiation or --wavelength, not both")
    return wavelength if wavelength is not None else radiation


def _load(file: Path, radiation: str | None, wavelength: float | None, bank: int | None, fmt: str | None):
    from xrdsolve.conditioning.io import read_pattern

    return read_pattern(file, radiation=_radiation(radiation, wavelength), format=fmt, bank=bank)


@app.command()
def info(
    file: Path = typer.Argument(..., help="Pattern file."),
    radiation: str | None = typer.Option(None, "--radiation", "-r", help=_RAD_HELP),
    wavelength: float | None = typer.Option(None, "--wavelength", "-w", help=_WL_HELP),
    bank: int | None = typer.Option(None, "--bank", help=_BANK_HELP),
    fmt: str | None = typer.Option(None, "--format", help="Force a reader (see --list-formats in docs)."),
    peaks: int = typer.Option(15, "--peaks", help="Number of peaks to list (0 for none)."),
) -> None:
    """Summarise a pattern file: format, points, range, step, radiation, counts, σ source, peaks."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from xrdsolve.conditioning.io import list_banks
    from xrdsolve.conditioning.peaks import find_peaks

    p = _load(file, radiation, wavelength, bank, fmt)
    con = Console(highlight=False)
    lo, hi = p.range
    con.print(f"[bold]{file}[/bold]")
    rows = [
        ("format", str(p.meta.get("format"))),
        ("points", str(len(p))),
        ("2θ range", f"{lo:.4f} – {hi:.4f}°"),
        (
            "step",
            f"{p.step:.5g}°"
            + ("" if np.allclose(np.diff(p.two_theta), p.step, rtol=1e-3) else " (median; uneven)"),
        ),
        ("radiation", p.radiation.describe() if p.radiation else "unknown (give --radiation/--wavelength)"),
        ("max counts" if p.sigma_source.value == "counting" else "max intensity", f"{p.intensity.max():.6g}"),
        (
            "σ source",
            p.sigma_source.value
            + (f" ({p.meta['sigma_filled']} filled)" if "sigma_filled" in p.meta else ""),
        ),
        ("geometry", p.geometry.value),
    ]
    if p.radiation is not None:
        q = p.q()
        rows.append(("Q range", f"{q[0]:.4f} – {q[-1]:.4f} Å⁻¹"))
    banks = (
        list_banks(file) if p.meta.get("format", "").startswith(("gsas", "bruker", "xrdml", "pdcif")) else []
    )
    if len(banks) > 1:
        rows.append(("banks", "; ".join(banks)))
    for k, v in rows:
        con.print(f"  {k:<14}{v}")
    if peaks > 0:
        pk = find_peaks(p, max_peaks=peaks)
        table = Table(title=f"{len(pk)} strongest peaks", box=None, pad_edge=False)
        for col in ("2θ (°)", "d (Å)", "height", "FWHM (°)"):
            table.add_column(col, justify="right")
        for t, d, h, w in zip(pk.two_theta, pk.d, pk.height, pk.fwhm, strict=True):
            table.add_row(f"{t:.4f}", "—" if np.isnan(d) else f"{d:.5f}", f"{h:.4g}", f"{w:.4f}")
        con.print(table)


@app.command()
def convert(
    file: Path = typer.Argument(..., help="Pattern file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file, .xye or .csv."),
    radiation: str | None = typer.Option(None, "--radiation", "-r", help=_RAD_HELP),
    wavelength: float | None = typer.Option(None, "--wavelength", "-w", help=_WL_HELP),
    bank: int | None = typer.Option(None, "--bank", help=_BANK_HELP),
    fmt: str | None = typer.Option(None, "--format", help="Force a reader."),
) -> None:
    """Convert a pattern file to .xye or .csv (2θ, intensity, σ; radiation kept in the header)."""
    from xrdsolve.conditioning.io import write_pattern

    p = _load(file, radiation, wavelength, bank, fmt)
    out = write_pattern(p, output)
    typer.echo(f"wrote {out} ({len(p)} points)")


@app.command()
def plot(
    file: Path = typer.Argument(..., help="Pattern file."),
    output: Path = typer.Option(..., "--output", "-o", help="Figure file: .png, .pdf or .svg."),
    radiation: str | None = typer.Option(None, "--radiation", "-r", help=_RAD_HELP),
    wavelength: float | None = typer.Option(None, "--wavelength", "-w", help=_WL_HELP),
    bank: int | None = typer.Option(None, "--bank", help=_BANK_HELP),
    x: str = typer.Option("two_theta", "--x", help="x axis: two_theta, q or d."),
    mark_peaks: bool = typer.Option(False, "--peaks", help="Mark picked peaks."),
    dpi: int = typer.Option(300, "--dpi", help="Resolution for raster output."),
) -> None:
    """Draw a pattern to a publication-quality figure."""
    from matplotlib.figure import Figure

    from xrdsolve.conditioning.peaks import find_peaks
    from xrdsolve.conditioning.plotting import plot_pattern
    from xrdsolve.errors import UsageError

    if output.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"{output}: unsupported figure type; use .png, .pdf or .svg")
    if x not in ("two_theta", "q", "d"):
        raise UsageError(f"--x {x!r}: use two_theta, q or d")
    p = _load(file, radiation, wavelength, bank, None)
    fig = Figure(figsize=(6.5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    plot_pattern(p, ax, x=x, peaks=find_peaks(p) if mark_peaks else None)  # type: ignore[arg-type]
    ax.set_title(file.name, fontsize="small", loc="left")
    try:
        fig.savefig(output, dpi=dpi)
    except OSError as exc:
        raise UsageError(f"{output}: cannot write figure: {exc.strerror or exc}") from None
    typer.echo(f"wrote {output}")
