"""``xrdsolve refine PATTERN MODEL.cif [MODEL2.cif ...]``: Rietveld refinement of one or more phases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer

from . import app


@app.command()
def refine(
    pattern: Path = typer.Argument(..., help="Pattern file (any format xrdsolve reads)."),
    models: list[Path] = typer.Argument(..., help="One CIF per phase (starting model)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    instrument: Path | None = typer.Option(
        None,
        "--instrument",
        "-i",
        help="GSAS instrument parameter file (.prm/.instprm) for starting profile values.",
    ),
    radiation: str | None = typer.Option(
        None, "--radiation", "-r", help="Radiation preset (CuKa, ...), wavelength in Å, or neutron:1.594."
    ),
    bank: int | None = typer.Option(None, "--bank", help="Bank/scan of a multi-pattern file (1-based)."),
    two_theta_min: float | None = typer.Option(None, "--min", help="Lowest 2θ (degrees) used."),
    two_theta_max: float | None = typer.Option(None, "--max", help="Highest 2θ (degrees) used."),
    n_background: int = typer.Option(6, "--background", help="Number of Chebyshev background terms."),
    fix: list[str] = typer.Option([], "--fix", help="Parameter or group held fixed (repeatable), e.g. occ."),
    refine_occupancy: list[str] = typer.Option(
        [],
        "--refine-occupancy",
        help="CIF site label(s) whose occupancy is refined (vacancies, total ≤ 1): SITE[,SITE] (repeatable).",
    ),
    mix: list[str] = typer.Option(
        [], "--mix", help="Mixed site: SITE=Fe,Mn (fractions keep the site total; repeatable)."
    ),
    exchange: list[str] = typer.Option(
        [], "--exchange", help="Anti-site exchange between two sites: A,B (e.g. Li1,Ni1; repeatable)."
    ),
    restrain_composition: str | None = typer.Option(
        None,
        "--restrain-composition",
        help="Composition restraint FORMULA[:WEIGHT] (weight = 1/σ per atom fraction, default 100).",
    ),
    restart: bool = typer.Option(
        True,
        "--restart/--no-restart",
        help="Also run the staged refinement with a wider lattice annealing and keep the lower χ² (twice the "
        "time; escapes local minima of pseudo-symmetric cells and overlapping peaks).",
    ),
    engine: str = typer.Option(
        "xrdsolve",
        "--engine",
        help="Refinement engine: xrdsolve (ours) or gsas (GSAS-II via its scripting API, if installed; "
        "its project is written to OUTPUT/gsas2).",
    ),
) -> None:
    """Refine the phases in MODEL.cif files against PATTERN; write summary.json, refined CIFs, fit.png, fit.xye."""
    from matplotlib.figure import Figure

    from xrdsolve.conditioning.io import read_pattern
    from xrdsolve.refine.errors import RefineError
    from xrdsolve.refine.params import load_cif
    from xrdsolve.refine.radiation import Radiation
    from xrdsolve.refine.rietveld import RefineOptions
    from xrdsolve.refine.rietveld import refine as run_refine

    if engine not in ("xrdsolve", "gsas"):
        raise typer.BadParameter(f"--engine {engine!r}: expected xrdsolve or gsas")
    inst = None
    if instrument is not None:
        from xrdsolve.conditioning.readers.gsas_instprm import read_instrument

        inst = read_instrument(instrument)
    rad: Radiation | None = Radiation.parse(radiation) if radiation is not None else None
    pat = read_pattern(pattern, radiation=rad, bank=bank)
    if rad is None and pat.radiation is None and inst is None:
        raise RefineError(f"{pattern}: no wavelength in the file; give --radiation or --instrument")
    structures = []
    names = []
    for cif in models:
        s = load_cif(cif)[0]
        structures.append(s)
        names.append(cif.stem)
    opts = RefineOptions(
        n_background=n_background, two_theta_min=two_theta_min, two_theta_max=two_theta_max, fix=tuple(fix)
    )
    if not restart:
        opts = dataclasses.replace(opts, annealing_restarts=())
    occ = _occupancy_options(refine_occupancy, mix, exchange, restrain_composition)
    output.mkdir(parents=True, exist_ok=True)
    if engine == "gsas":
        from xrdsolve.refine.gsas import refine_gsas

        if occ:
            raise typer.BadParameter(
                "--engine gsas does not take occupancy options (--refine-occupancy, --mix, ...)"
            )
        result = refine_gsas(
            pat,
            structures,
            instrument=inst,
            radiation=rad,
            workdir=output / "gsas2",
            two_theta_min=two_theta_min,
            two_theta_max=two_theta_max,
            n_background=n_background,
            fix=tuple(fix),
            names=names,
        )
    else:
        result = run_refine(pat, structures, instrument=inst, radiation=rad, options=opts, names=names, **occ)
    summary = result.to_summary_dict()
    summary["pattern"] = str(pattern)
    summary["models"] = [str(m) for m in models]
    summary["engine"] = engine
    if getattr(result, "occupancy_model", None) is not None:
        summary["occupancy_model"] = result.occupancy_model
    (output / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
    for k, ph in enumerate(result.phases):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in ph.name)
        (output / f"refined_{safe}.cif").write_text(result.to_cif(k))
    result.write_xye(output / "fit.xye")
    fig = Figure(figsize=(11, 6))
    result.plot(ax=fig.add_subplot(1, 1, 1))
    fig.savefig(output / "fit.png", dpi=130, bbox_inches="tight")
    status = "converged" if result.converged else f"NOT converged ({result.status})"
    typer.echo(
        f"Rwp {100 * result.rwp:.3f} %  Rp {100 * result.rp:.3f} %  GoF {result.gof:.3f}  {status}  -> {output}"
    )


def _occupancy_options(
    refine_occupancy: list[str], mix: list[str], exchange: list[str], restrain_composition: str | None
) -> dict[str, Any]:
    """Keyword arguments of refine() from the --refine-occupancy/--mix/--exchange/--restrain-composition flags."""
    out: dict[str, Any] = {}
    sites = [lab.strip() for item in refine_occupancy for lab in item.split(",") if lab.strip()]
    if sites:
        out["refine_occupancy"] = sites
    mixes: dict[str, list[str]] = {}
    for item in mix:
        site, sep, species = item.partition("=")
        names = [sp.strip() for sp in species.split(",") if sp.strip()]
        if not sep or not site.strip() or len(names) < 2:
            raise typer.BadParameter(f"--mix {item!r}: expected SITE=El1,El2[,...]")
        mixes[site.strip()] = names
    if mixes:
        out["mix"] = mixes
    pairs = []
    for item in exchange:
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 2 or not all(parts):
            raise typer.BadParameter(f"--exchange {item!r}: expected two site labels A,B")
        pairs.append((parts[0], parts[1]))
    if pairs:
        out["exchange"] = pairs
    if restrain_composition:
        formula, sep, weight = restrain_composition.partition(":")
        try:
            w = float(weight) if sep else 100.0
        except ValueError:
            raise typer.BadParameter(
                f"--restrain-composition {restrain_composition!r}: weight is not a number"
            ) from None
        out["composition_restraint"] = (formula.strip(), w)
    return out
