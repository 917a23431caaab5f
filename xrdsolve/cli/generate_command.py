"""``xrdsolve generate`` (candidate structures for a pattern) and ``xrdsolve bench generate``."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app, bench_app


def _parse_cell(text: str | None):  # -> pymatgen Lattice | None
    if text is None:
        return None
    from pymatgen.core import Lattice

    try:
        vals = [float(x) for x in text.replace(" ", ",").split(",") if x]
    except ValueError:
        vals = []
    if len(vals) != 6:
        raise typer.BadParameter("--cell needs six numbers: a,b,c (Å),alpha,beta,gamma (degrees)")
    return Lattice.from_parameters(*vals)


@app.command()
def generate(
    pattern: Path = typer.Argument(..., help="Pattern file."),
    composition: str = typer.Option(
        ..., "--composition", help="Cell content with Z, e.g. Fe4O6 (a formula without Z with --index)."
    ),
    n: int = typer.Option(20, "-n", help="Number of candidates."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for candidate CIFs and summary.json."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same candidates)."),
    radiation: str | None = typer.Option(
        None, "--radiation", "-r", help="Radiation preset or wavelength in Å."
    ),
    cell: str | None = typer.Option(
        None, "--cell", help="Known cell a,b,c,alpha,beta,gamma (lattice-given mode)."
    ),
    index: bool = typer.Option(
        False, "--index", help="Lattice-given mode in the cell indexed from PATTERN (Z from its volume)."
    ),
    steps: int = typer.Option(100, "--steps", help="Reverse-diffusion steps."),
    guidance_scale: float = typer.Option(1.0, "--cfg", help="Classifier-free guidance weight (1 = off)."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weights directory (default: shipped model)."
    ),
    physics_guidance: bool = typer.Option(
        False, "--physics-guidance", help="Nudge samples towards the pattern."
    ),
) -> None:
    """Propose candidate structures for PATTERN with the diffusion generator (raw samples, no refinement)."""
    import json

    from rich.console import Console

    from xrdsolve.conditioning.io import read_pattern
    from xrdsolve.generate.bench import pattern_scores
    from xrdsolve.generate.metrics import min_distance
    from xrdsolve.generate.sampler import sample
    from xrdsolve.generate.weights import cached_default, load_weights

    if n < 1:
        raise typer.BadParameter("-n must be at least 1")
    pat = read_pattern(pattern, radiation=radiation)
    if index and cell is not None:
        raise typer.BadParameter("give either --cell or --index, not both")
    lattice = "index" if index else _parse_cell(cell)
    hook = None
    if physics_guidance:
        from xrdsolve.generate.guidance import PatternGuidance

        hook = PatternGuidance(pat)
    structures = sample(pat, composition, n=n, seed=seed, lattice=lattice, steps=steps,
                        guidance_scale=guidance_scale, guidance=hook, weights=weights)  # fmt: skip
    _, cfg, _ = cached_default("cpu") if weights is None else load_weights(weights)
    from xrdsolve.conditioning.preprocess import QGrid

    e = cfg.encoder
    scores = pattern_scores(pat, structures, QGrid(e.q_min, e.q_max, e.n_points))
    order = sorted(range(len(structures)), key=lambda i: -scores[i])
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, i in enumerate(order, 1):
        s = structures[i]
        name = f"sample{rank:03d}.cif"
        s.to(filename=str(output / name))
        rows.append({"rank": rank, "cif": name, "formula": s.composition.formula, "volume": round(s.volume, 3),
                     "min_distance": round(min_distance(s), 3), "pattern_similarity": round(float(scores[i]), 4)})  # fmt: skip
    summary = {"pattern": str(pattern), "composition": composition, "seed": seed, "n": n, "candidates": rows}
    (output / "summary.json").write_text(json.dumps(summary, indent=1))
    Console().print(
        f"{n} candidates written to {output} (ranked by pattern similarity; best {rows[0]['pattern_similarity']})"
    )


@bench_app.command("generate")
def bench_generate(
    split: str = typer.Option("val", "--split", help="MP-20 rows: val (model selection) or test (reported)."),
    n: int = typer.Option(120, "--n", help="Number of patterns."),
    k: int = typer.Option(20, "--k", help="Candidates per pattern."),
    seed: int = typer.Option(0, "--seed"),
    steps: int = typer.Option(50, "--steps", help="Reverse-diffusion steps."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weights directory (default: shipped model)."
    ),
    baseline: bool = typer.Option(
        True, "--baseline/--no-baseline", help="Also run the pyxtal random baseline."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Cache the (model-independent) baseline here."
    ),
    physics_guidance: bool = typer.Option(
        False, "--physics-guidance", help="Sample with physics guidance towards each pattern."
    ),
    lattice: str = typer.Option(
        "free",
        "--lattice",
        help="free (the model samples the cell) or indexed (half the samples on Wyckoff sites of the indexed cell).",
    ),
    index_time: float = typer.Option(15.0, "--index-time", help="Indexing search time per pattern (s)."),
) -> None:
    """Match rates of raw generator samples vs a pyxtal random symmetric baseline (one JSON line)."""
    import json

    from xrdsolve.generate.bench import bench_generate as run

    if split not in ("val", "test"):
        raise typer.BadParameter("--split must be val or test")
    if lattice not in ("free", "indexed"):
        raise typer.BadParameter("--lattice must be free or indexed")
    res = run(
        split=split,
        n=n,
        k=k,
        seed=seed,
        steps=steps,
        weights=weights,
        baseline=baseline,
        cache_dir=cache_dir,
        physics_guidance=physics_guidance,
        lattice=lattice,
        index_time=index_time,
    )
    print(json.dumps(res))
