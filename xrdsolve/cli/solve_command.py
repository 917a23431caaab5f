"""``xrdsolve solve``: pattern in, ranked refined structures out."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command()
def solve(
    pattern: Path = typer.Argument(..., help="Pattern file (any supported format)."),
    composition: str | None = typer.Option(
        None, "--composition", "-c", help="Formula with or without Z, e.g. TiO2, Fe2O3, (Mn,Fe)3O4."
    ),
    elements: str | None = typer.Option(
        None,
        "--elements",
        help="Allowed elements instead of a formula, e.g. Li,Mn,O (compositions proposed).",
    ),
    radiation: str | None = typer.Option(None, "--radiation", "-r", help="CuKa, MoKa, ... or wavelength Å."),
    instrument: Path | None = typer.Option(None, "--instrument", help="GSAS .prm/.instprm instrument file."),
    k: int = typer.Option(20, "-k", help="Candidates refined fully and reported."),
    candidates: int = typer.Option(96, "--candidates", help="Candidate structures proposed and screened."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same result)."),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Seconds; stages shrink to fit."),
    disorder: str = typer.Option(
        "auto",
        "--disorder",
        help="auto|off|only: disordered models for non-stoichiometric or mixed compositions "
        "(Li0.6CoO2, Fe0.9O, (Mn,Fe)3O4), added to the ordered ones, none, or only those.",
    ),
    supercells: int = typer.Option(
        0,
        "--supercells",
        help="MAXMULT: also try ordered defect supercells up to this multiplicity and decide order vs "
        "disorder (Hamilton test); 0 = none.",
    ),
    no_generator: bool = typer.Option(False, "--no-generator", help="Random symmetric candidates only."),
    out: Path = typer.Option(Path("out/solve"), "-o", "--out", help="Output folder."),
    top: int = typer.Option(10, "--top", help="Rows of the ranked table printed."),
    report: bool = typer.Option(
        False,
        "--report",
        help="Also write OUTDIR/report.html (self-contained: plots, structures, provenance).",
    ),
    view_axis: str = typer.Option(
        "c", "--view-axis", help="Lattice axis the report's structure views look along."
    ),
) -> None:
    """Solve a structure: index, propose candidates, screen, refine, rank. Writes summary.json,
    rank01.cif, rank02.cif, … and fit.png (and report.html with --report) into the output folder and
    prints the ranked table."""
    from rich.console import Console

    from xrdsolve.pipeline import SolveOptions
    from xrdsolve.pipeline import solve as run_solve

    if view_axis not in ("a", "b", "c"):
        raise typer.BadParameter("must be a, b or c", param_hint="--view-axis")
    options = SolveOptions(
        k=k,
        n_candidates=candidates,
        seed=seed,
        time_budget=time_budget,
        use_generator=not no_generator,
        disorder=disorder,
        supercells=supercells,
    )
    solution = run_solve(
        pattern,
        composition,
        elements=elements,
        radiation=radiation,
        instrument=instrument,
        options=options,
    )
    summary = solution.write(out)
    if report:
        solution.write_report(out / "report.html", axis=view_axis)
    con = Console(highlight=False)
    typer.echo(solution.table(top))
    for msg in solution.messages:
        con.print(f"[yellow]note:[/yellow] {msg}")
    extra = ", report.html" if report else ""
    con.print(f"results in {summary.parent}/ (summary.json, rank01.cif, …, fit.png{extra})")
    if not solution.candidates:
        raise typer.Exit(1)
