"""Notebook views (_repr_html_) and the self-contained solve report (report.html, rendered in Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdsolve.cli import main
from xrdsolve.conditioning import read_pattern
from xrdsolve.refine.html_repr import format_esd
from xrdsolve.refine.rietveld import RefineOptions, Stage, refine_candidates
from xrdsolve.report.structure_view import cell_images, plot_structure_projection
from xrdsolve.solution import Candidate, Solution

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "examples" / "demo_pattern.xye"
RUTILE = REPO / "data" / "examples" / "rutile_TiO2.cif"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: A short strategy on a cropped range keeps the fixture cheap (the full solve is tested in test_pipeline).
QUICK = RefineOptions(
    strategy=(
        Stage("scale+background", ("scale", "background"), 10),
        Stage("+lattice+zero", ("lattice", "zero"), 12),
        Stage("+profile", ("profile",), 10),
    ),
    two_theta_min=20.0,
    two_theta_max=70.0,
)


@pytest.fixture(scope="module")
def solution() -> Solution:
    """Two candidates against the demo pattern: rutile (right) and the same atoms in a cubic cell (wrong)."""
    pattern = read_pattern(DEMO)
    rutile = Structure.from_file(RUTILE)
    wrong = Structure(Lattice.cubic(4.0), ["Ti", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]])
    results = refine_candidates(pattern, [rutile, wrong], options=QUICK)
    order = sorted(range(2), key=lambda i: results[i].rwp)
    cands = [
        Candidate(
            rank=n + 1,
            structure=results[i].phases[0].structure,
            rwp=results[i].rwp,
            rp=results[i].rp,
            gof=results[i].gof,
            provenance={"source": "test", "seed": 0},
            result=results[i],
        )
        for n, i in enumerate(order)
    ]
    return Solution(
        pattern,
        cands,
        tried={"generator": {"used": False, "reason": "switched off"}},
        messages=["a note for the reader"],
        options={"seed": 7, "k": 2, "n_candidates": 2, "composition": "Ti1 O2"},
    )


def test_rutile_wins_the_fixture(solution: Solution) -> None:
    best = solution.best
    assert best is not None and best.formula == "TiO2" and best.spacegroup == "P4_2/mnm"
    assert best.rwp < 0.12 < solution.candidates[1].rwp


def test_format_esd() -> None:
    assert format_esd(4.593701, 0.00012) == "4.59370(12)"
    assert format_esd(4.5937, 0.0003) == "4.5937(3)"
    assert format_esd(1.0, 0.0) == "1.0000"
    assert format_esd(float("nan"), 0.1) == "nan"


def test_solution_repr_html_has_table_numbers_and_plot(solution: Solution) -> None:
    page = solution._repr_html_()
    best = solution.best
    assert best is not None
    assert f"{100 * best.rwp:.2f}" in page and f"{100 * solution.candidates[1].rwp:.2f}" in page
    assert f"{best.structure.lattice.a:.4f}" in page and "P4_2/mnm" in page and "TiO2" in page
    assert page.count("<tr") == 1 + len(solution.candidates)
    assert "a note for the reader" in page
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{5000,}"', page)


def test_refinement_result_repr_html(solution: Solution) -> None:
    best = solution.best
    assert best is not None
    res = best.result
    page = res._repr_html_()
    assert f"{100 * res.rwp:.2f}" in page and f"{100 * res.rp:.2f}" in page and f"{res.gof:.3f}" in page
    ph = res.phases[0]
    assert format_esd(ph.lattice["a"].value, ph.lattice["a"].esd) in page
    assert ph.spacegroup in page and ph.sites[0].label in page
    assert "data:image/png;base64," in page


def test_cell_images_of_rutile() -> None:
    rutile = Structure.from_file(RUTILE)
    coords, owner = cell_images(rutile.frac_coords)
    # Ti at the corners (8 images) and body centre (1); O at z=0 (2 × 2 images) and z=1/2 (2)
    species = np.array([rutile[i].specie.symbol for i in owner])
    assert (species == "Ti").sum() == 9 and (species == "O").sum() == 6
    assert np.all((coords >= -1e-9) & (coords <= 1 + 1e-3))


def test_projection_along_c_draws_the_square_cell() -> None:
    rutile = Structure.from_file(RUTILE)
    ax = plot_structure_projection(rutile, axis="c")
    assert len(ax.patches) == 15  # every atom image (see above) is one disc
    xs = np.concatenate([line.get_xdata() for line in ax.lines[:12]])
    ys = np.concatenate([line.get_ydata() for line in ax.lines[:12]])
    a = rutile.lattice.a
    assert np.ptp(xs) == pytest.approx(a, abs=1e-9) and np.ptp(ys) == pytest.approx(a, abs=1e-9)
    along_a = plot_structure_projection(rutile, axis="a")
    heights = np.concatenate([line.get_ydata() for line in along_a.lines[:12]])
    assert np.ptp(heights) == pytest.approx(rutile.lattice.c, abs=1e-9)
    with pytest.raises(ValueError):
        plot_structure_projection(rutile, axis="z")


def test_report_is_self_contained(solution: Solution, tmp_path: Path) -> None:
    path = solution.write_report(tmp_path / "r" / "report.html", top=2)
    text = path.read_text()
    srcs = re.findall(r"""src=['"]([^'"]*)['"]""", text)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)  # fit + 2 views
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert "xrdsolve version" in text and "0.1.0" in text and "seed" in text
    assert "default@" in text  # the shipped weights' id (name@sha256 prefix)


def test_cli_report_flag_writes_report(
    solution: Solution, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xrdsolve.pipeline

    monkeypatch.setattr(xrdsolve.pipeline, "solve", lambda *a, **k: solution)
    out = tmp_path / "out"
    code = main(["solve", str(DEMO), "-c", "TiO2", "-o", str(out), "--report", "--view-axis", "a"])
    assert code == 0
    text = (out / "report.html").read_text()
    assert "projected along a" in text and (out / "summary.json").is_file()
    assert main(["solve", str(DEMO), "-c", "TiO2", "-o", str(out), "--view-axis", "q"]) == 2


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(solution: Solution, tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not installed at {CHROMIUM} (make test installs Debian's chromium)")
    from matplotlib.image import imread

    path = solution.write_report(tmp_path / "report.html")
    url = path.resolve().as_uri()
    png = tmp_path / "shot.png"
    shot = _chromium([f"--screenshot={png}", "--window-size=1200,2000", url], tmp_path / "p1")
    assert png.is_file(), shot.stderr[-2000:]
    pixels = imread(png)[..., :3]
    assert pixels.shape[0] >= 1900 and pixels.shape[1] >= 1100
    assert float(pixels.var()) > 0.01  # not a blank page
    assert float((pixels.mean(axis=2) < 0.9).mean()) > 0.02  # ink: text, tables, plot lines
    dom = _chromium(["--dump-dom", url], tmp_path / "p2").stdout
    best = solution.best
    assert best is not None
    assert f"{100 * best.rwp:.2f}" in dom and "TiO2" in dom and "P4_2/mnm" in dom
    assert dom.count("data:image/png;base64,") == 3  # fit plot + a view of each of the 2 candidates


def test_empty_solution_renders_and_says_why(tmp_path: Path) -> None:
    pattern = read_pattern(DEMO)
    empty = Solution(pattern, [], messages=["fewer than 3 peaks found"], options={"seed": 3})
    assert "no candidate fitted" in empty._repr_html_() and "fewer than 3 peaks" in empty._repr_html_()
    text = empty.write_report(tmp_path / "report.html").read_text()
    assert "No candidate fitted." in text and "fewer than 3 peaks found" in text and "data:image" not in text
