"""Solve-side disorder plan (issue 8): stoichiometric parents of non-stoichiometric compositions."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition

from xrdsolve.disorder import disorder_models, disorder_plan
from xrdsolve.errors import UsageError


@pytest.mark.parametrize(
    ("text", "parent", "vacancies", "mixed"),
    [
        ("Li0.6CoO2", "LiCoO2", {"Li": 0.4}, {}),
        ("Fe0.9O", "FeO", {"Fe": 0.1}, {}),
        ("Li0.5Mn2O4", "LiMn2O4", {"Li": 0.5}, {}),
        ("(Mn,Fe)3O4", "Mn3O4", {}, {"Mn": ["Mn", "Fe"]}),
        ("La0.7Sr0.3MnO3", "LaMnO3", {}, {"La": ["La", "Sr"]}),
        ("Ba0.5La0.5CoO3", "BaCoO3", {}, {"Ba": ["Ba", "La"]}),
        ("Ca0.25Sr0.25Ba0.5TiO3", "BaTiO3", {}, {"Ba": ["Ba", "Ca", "Sr"]}),
        ("TiO2", "TiO2", {}, {}),
    ],
)
def test_parent_and_deviations(text: str, parent: str, vacancies: dict, mixed: dict) -> None:
    plan = disorder_plan(text)
    assert plan.parent.reduced_composition == Composition(parent).reduced_composition
    assert plan.vacancies == pytest.approx(vacancies)
    assert plan.mixed == mixed
    assert plan.trivial == (not vacancies and not mixed)


def test_a_shared_site_is_restrained_to_the_given_fractions() -> None:
    """Fractions adding up to one site (La0.7Sr0.3) keep the composition as the occupancy restraint's target;
    an explicit mixed group gives no ratio, so none; a shared site beside another deviation stays an error."""
    assert disorder_plan("La0.7Sr0.3MnO3").target == Composition("La0.7Sr0.3MnO3")
    assert disorder_plan("(Mn,Fe)3O4").target is None
    assert disorder_plan("Li0.6CoO2").target == Composition("Li0.6CoO2")
    with pytest.raises(UsageError, match="one deficient element"):
        disorder_plan("La0.7Sr0.3MnO2.5")


def test_bad_compositions_and_modes() -> None:
    with pytest.raises(UsageError):
        disorder_plan("Qq2O")
    with pytest.raises(UsageError, match="one deficient element"):
        disorder_plan("Li0.3Co0.7O2.3")
    with pytest.raises(UsageError, match="--disorder"):
        disorder_models(None, [], disorder_plan("Fe0.9O"), mode="sometimes")
    assert disorder_models(None, [], disorder_plan("Fe0.9O"), mode="off") == []
    assert disorder_models(None, [], disorder_plan("TiO2"), mode="auto") == []


@pytest.mark.slow
def test_disorder_models_on_a_vacancy_ordered_pattern() -> None:
    import numpy as np
    from disorder_trials import la05_layered, la_nbo3_parent

    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.rietveld import RefineOptions

    pat = simulate_pattern(
        la05_layered(3.91, 1.0, 0.005, (0.6, 0.3, 0.8)), np.arange(10.0, 80.0, 0.02), seed=2
    )
    plan = disorder_plan("La0.5NbO3")
    out = disorder_models(
        pat, [la_nbo3_parent()], plan, mode="auto", max_mult=2, options=RefineOptions(n_background=4)
    )
    assert len(out) == 1 and "disordered" in out[0]
    la = next(s for s in out[0]["disordered"].phases[0].sites if s.label == "La1")
    assert la.occupancy["La"].value == pytest.approx(0.5, abs=0.05)  # restrained to the composition
    decision = out[0]["order_decision"]
    assert decision is not None and decision.ordered and decision.best.multiplicity == 2


# ------------------------------------------------------------------------- wired into the solve (--disorder)
def _feo(occupancy: float, a: float = 4.30):
    from pymatgen.core import Lattice, Structure

    fe = {"Fe": occupancy} if occupancy < 1 else "Fe"
    s = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [fe, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]], labels=["Fe1", "O1"]
    )
    s.add_site_property("b_iso", [0.6 if site.label == "Fe1" else 0.8 for site in s])
    return s


@pytest.fixture(scope="module")
def fe09o_ranked():
    """A noisy Cu Kα pattern of Fe0.9O and the ordered FeO parent refined against it, as the solve ranks it."""
    import numpy as np

    from xrdsolve.pipeline import _score
    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.rietveld import refine
    from xrdsolve.solution import Candidate

    pat = simulate_pattern(_feo(0.9), np.arange(20.0, 100.0, 0.02), seed=5)
    res = refine(pat, _feo(1.0, a=4.305))
    cand = Candidate.from_result(res, {"source": "test"}, rank=1, score=_score(res))
    return pat, cand


@pytest.mark.parametrize("mode", ["auto", "only"])
def test_solve_stage_adds_a_refined_vacancy_model(fe09o_ranked, mode: str) -> None:
    from xrdsolve.pipeline import SolveOptions, _with_disorder

    pat, ordered = fe09o_ranked
    tried: dict = {}
    messages: list[str] = []
    opts = SolveOptions(disorder=mode, supercells=2)
    ranked, decisions = _with_disorder(
        pat, [ordered], disorder_plan("Fe0.9O"), opts, None, None, tried, messages
    )
    best = ranked[0]
    assert best.provenance["source"] == "disordered" and best.rank == 1
    assert best.formula.startswith("Fe0.9") and best.rwp < ordered.rwp
    fe = best.provenance["occupancies"]["Fe1"]["Fe"]
    assert abs(fe["value"] - 0.9) < 0.03 and abs(fe["value"] - 0.9) <= 3 * fe["esd"]
    assert [c.rank for c in ranked] == list(range(1, len(ranked) + 1))
    assert len(ranked) == (1 if mode == "only" else 2)
    record = tried["disorder"]["models"][0]
    assert record["parent_rank"] == (None if mode == "only" else 2)
    # 10 % of one Fe per primitive cell cannot be ordered in a 2-fold supercell: said, not hidden
    assert "supercell" in record["supercell_error"] and decisions == []
    assert any("needs a supercell larger" in m for m in messages)


def test_disorder_options_are_checked() -> None:
    from xrdsolve.pipeline import SolveOptions, _disorder_plan

    with pytest.raises(UsageError, match="--disorder must be one of"):
        _disorder_plan("Fe0.9O", SolveOptions(disorder="sometimes"))
    with pytest.raises(UsageError, match="--disorder only needs"):
        _disorder_plan("TiO2", SolveOptions(disorder="only"))
    with pytest.raises(UsageError, match="--supercells"):
        _disorder_plan("Fe0.9O", SolveOptions(supercells=1))
    assert _disorder_plan("TiO2", SolveOptions()) is None
    assert _disorder_plan("Fe0.9O", SolveOptions()).vacancies == pytest.approx({"Fe": 0.1})


def test_cli_rejects_a_bad_disorder_mode_in_one_line(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    demo = Path(__file__).parents[1] / "data" / "examples" / "demo_pattern.xye"
    cmd = [sys.executable, "-m", "xrdsolve", "solve", str(demo), "-c", "TiO2", "--disorder", "only"]
    out = subprocess.run([*cmd, "-o", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--disorder only needs a non-stoichiometric" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_solve_identifies_vacancy_order_and_writes_supercells(tmp_path) -> None:
    """End to end: La0.5NbO3 with La vacancies ordered in alternate layers; `solve --supercells 2`."""
    import json

    import numpy as np
    from disorder_trials import la05_layered

    from xrdsolve.conditioning.pattern import Pattern
    from xrdsolve.pipeline import solve
    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.radiation import Radiation

    pat = simulate_pattern(
        la05_layered(3.91, 1.002, 0.005, (0.6, 0.3, 0.8)), np.arange(10.0, 100.0, 0.02), seed=3
    )
    pattern = Pattern.from_arrays(
        pat.two_theta, pat.intensity, radiation=Radiation.parse("CuKa"), counts=True
    )
    sol = solve(pattern, "La0.5NbO3", n_candidates=16, k=4, seed=0, supercells=2, progress=False)
    decisions = [m["order_decision"] for m in sol.tried["disorder"]["models"] if m.get("order_decision")]
    assert any(d["decision"] == "ordered" and d["multiplicity"] == 2 for d in decisions)
    sol.write(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    folder = next(m["outputs"] for m in summary["disorder"]["models"] if m.get("outputs"))
    assert (tmp_path / folder / "order_decision.json").is_file()
    assert list((tmp_path / folder).glob("supercell_x2_*.cif"))


# ------------------------------------------------------------------- sub-cells: the cell of the average structure
def _la_nbo3_pattern(ordered: bool):
    import numpy as np
    from disorder_trials import la05_layered, la_nbo3_parent

    from xrdsolve.conditioning.pattern import Pattern
    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.radiation import Radiation
    from xrdsolve.refine.supercells import disordered_average

    truth = (
        la05_layered(3.91, 1.002, 0.005, (0.6, 0.3, 0.8))
        if ordered
        else disordered_average(la_nbo3_parent(3.91), "La1", 0.5)
    )
    pat = simulate_pattern(truth, np.arange(10.0, 100.0, 0.02), seed=3)
    return Pattern.from_arrays(pat.two_theta, pat.intensity, radiation=Radiation.parse("CuKa"), counts=True)


def test_indexing_adds_the_average_sub_cell_of_a_vacancy_ordered_pattern() -> None:
    """The ordered 1×1×2 pattern indexes as a 3.91 × 3.91 × 7.84 Å cell; for a vacancy composition the solve
    also tries the 3.91 × 3.91 × 3.92 Å sub-cell of the strong lines, P4/mmm first; no sub-cell for the
    disordered pattern, none unless asked, none thinner than 2.2 Å."""
    from xrdsolve.pipeline import SolveOptions, _Clock, _index

    parent = Composition("LaNbO3")
    opts = SolveOptions(supercells=2)
    tried: dict = {}
    cells = _index(_la_nbo3_pattern(True), tried, _Clock(None), opts, subcells_for=parent)
    first = cells[0][0]
    assert first.abc == pytest.approx((3.91, 3.91, 7.836), abs=0.01)
    subs = [(c, g) for c, g in cells if c.volume < 0.6 * first.volume]
    assert len(subs) == 1
    sub, groups = subs[0]
    assert sub.crystal_system == "tetragonal" and sub.abc == pytest.approx((3.91, 3.91, 3.918), abs=0.01)
    assert groups[0] == 123
    assert min(min(c.abc) for c, _ in cells) > 2.2
    record = tried["indexing"]["subcells"]
    assert any(r["divisions"] == [1, 1, 2] and 0.5 <= r["height_fraction"] < 1.0 for r in record)
    plain = _index(_la_nbo3_pattern(True), {}, _Clock(None), opts)
    assert all(c.volume > 0.9 * first.volume for c, _ in plain)
    tried_dis: dict = {}
    cells_dis = _index(_la_nbo3_pattern(False), tried_dis, _Clock(None), opts, subcells_for=parent)
    assert cells_dis[0][0].abc == pytest.approx((3.91, 3.91, 3.91), abs=0.01)
    assert "subcells" not in tried_dis["indexing"]


def test_disordered_models_keep_to_the_deadline(fe09o_ranked, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a time budget the disordered models' refinements stop at the solve's deadline (passed on as
    RefineOptions.deadline), and none are tried once it has passed — the ordered candidates stay."""
    import time

    import xrdsolve.disorder as disorder
    from xrdsolve.pipeline import SolveOptions, _with_disorder

    pat, ordered = fe09o_ranked
    seen: list[float | None] = []
    monkeypatch.setattr(disorder, "disorder_models", lambda *a, **k: seen.append(k["options"].deadline) or [])
    disorder.disorder_candidates(pat, [ordered], disorder_plan("Fe0.9O"), "auto", 0, deadline=1234.5)
    assert seen == [1234.5]
    messages: list[str] = []
    ranked, _ = _with_disorder(
        pat, [ordered], disorder_plan("Fe0.9O"), SolveOptions(), None, time.perf_counter() - 1.0, {}, messages
    )
    assert ranked == [ordered] and seen == [1234.5]
    assert messages == ["time budget: no time left for the disordered models"]
