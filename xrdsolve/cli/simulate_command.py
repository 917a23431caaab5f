"""``xrdsolve simulate``: calculated powder pattern (.xye) or reflection list (--sticks CSV) of a structure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from . import app

if TYPE_CHECKING:
    from pymatgen.core import Structure


@app.command()
def simulate(
    structure: Path = typer.Argument(..., help="Structure file (CIF, or anything pymatgen reads)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .xye (profile) or .csv (--sticks)."),
    radiation: str = typer.Option(
        "CuKa", "--radiation", "-r", help="Preset (CuKa, MoKa…), λ in Å, or neutron:λ."
    ),
    two_theta_range: tuple[float, float] = typer.Option((5.0, 90.0), "--range", help="2θ range, degrees."),
    step: float = typer.Option(0.01, "--step", help="2θ step, degrees."),
    geometry: str = typer.Option("bragg-brentano", "--geometry", help="bragg-brentano or debye-scherrer."),
    u: float = typer.Option(2.0, "--u", help="Caglioti U, centideg² (GSAS-II)."),
    v: float = typer.Option(-2.0, "--v", help="Caglioti V, centideg²."),
    w: float = typer.Option(5.0, "--w", help="Caglioti W, centideg²."),
    x: float = typer.Option(0.0, "--x", help="Lorentzian X (size), centideg."),
    y: float = typer.Option(0.0, "--y", help="Lorentzian Y (strain), centideg."),
    polarisation: float = typer.Option(
        0.5, "--polarisation", help="GSAS-II Polariz. fraction (0.5 unpolarised)."
    ),
    sticks: bool = typer.Option(
        False, "--sticks", help="Write the reflection list as CSV instead of a profile."
    ),
    all_wavelengths: bool = typer.Option(
        False, "--all-wavelengths", help="With --sticks: list every wavelength (default Kα1 only)."
    ),
) -> None:
    """Simulate a powder pattern of a structure (profile .xye, or --sticks CSV h,k,l,d,two_theta,multiplicity,intensity).

    --sticks uses an unpolarised beam (no monochromator), B_iso from the file or 0, no preferred orientation,
    no anomalous dispersion, and scales intensities so the strongest is 100: directly comparable with pymatgen's
    XRDCalculator. The X-ray profile includes the anomalous terms f′ f″, as refinement does.
    """
    import numpy as np
    import torch

    from xrdsolve.errors import UsageError
    from xrdsolve.refine.errors import StructureError
    from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, reflection_tables
    from xrdsolve.refine.physics import simulate as simulate_pattern
    from xrdsolve.refine.radiation import Geometry, Probe, Radiation

    lo, hi = two_theta_range
    if not 0.0 <= lo < hi <= 180.0:
        raise UsageError(f"--range must satisfy 0 ≤ start < end ≤ 180, got {lo} {hi}")
    if step <= 0 or (hi - lo) / step > 5_000_000:
        raise UsageError("--step must be positive and give at most 5,000,000 points")
    rad = Radiation.parse(radiation)
    geom = Geometry.parse(geometry)
    if not structure.is_file():
        raise FileNotFoundError(2, "No such file", str(structure))
    struct = _read_structure(structure, StructureError)
    if sticks:
        if output.suffix.lower() != ".csv":
            raise UsageError("--sticks writes CSV: give an output name ending in .csv")
        wavelengths = rad.wavelengths if all_wavelengths else (rad.primary_wavelength,)
        rows: list[tuple[float, dict]] = []
        for lam, weight in zip(rad.wavelengths, rad.normalized_weights, strict=True):
            if lam not in wavelengths:
                continue
            one = Instrument(Radiation((lam,), (1.0,), rad.probe), geometry=geom, polarisation=0.5)
            table = reflection_tables([struct], one, hi, lo)[0]
            rows.extend(
                (lam, {**r, "intensity": r["intensity"] * (weight if all_wavelengths else 1.0)})
                for r in table
            )
        if not rows:
            raise UsageError(f"no reflections between {lo}° and {hi}° 2θ")
        top = max(r["intensity"] for _, r in rows)
        rows.sort(key=lambda t: t[1]["two_theta"])
        header = "h,k,l,d,two_theta,multiplicity,intensity" + (",wavelength" if all_wavelengths else "")
        lines = [header]
        for lam, r in rows:
            scaled = 100.0 * r["intensity"] / top
            if scaled < 1e-3:  # systematically absent or negligible (pymatgen's cut-off)
                continue
            line = f"{r['h']},{r['k']},{r['l']},{r['d']:.6f},{r['two_theta']:.5f},{r['multiplicity']},{scaled:.4f}"
            lines.append(line + (f",{lam:.6f}" if all_wavelengths else ""))
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        typer.echo(f"wrote {len(lines) - 1} reflections to {output}")
        return

    from xrdsolve.conditioning.io import write_pattern
    from xrdsolve.conditioning.pattern import Pattern

    grid = torch.as_tensor(np.arange(lo, hi + 0.5 * step, step), dtype=torch.float64)
    inst = Instrument(rad, geometry=geom, polarisation=polarisation, anomalous=rad.probe is not Probe.NEUTRON)
    prof = ProfileParams.default(1, U=u, V=v, W=w, X=x, Y=y)
    batch = CrystalBatch.from_structures([struct])
    with torch.no_grad():
        pattern = simulate_pattern(batch, grid, inst, prof)
    yv = cast(torch.Tensor, pattern)[0].numpy()
    if yv.max() > 0:
        yv = 10000.0 * yv / yv.max()
    pat = Pattern.from_arrays(
        grid.numpy(),
        yv,
        np.sqrt(np.maximum(yv, 1.0)),
        radiation=rad,
        geometry=geom,
        meta={"source": f"xrdsolve simulate {structure.name}"},
    )
    write_pattern(pat, output)
    typer.echo(f"wrote {len(grid)} points ({lo}–{hi}° 2θ, {rad.describe()}) to {output}")


def _read_structure(path: Path, error: type[Exception]) -> Structure:
    import warnings

    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_file(str(path))
    except Exception as exc:  # pymatgen raises many types for unreadable files
        raise error(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})") from None
