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
        ("TiO2", "TiO2", {}, {}),
    ],
)
def test_parent_and_deviations(text: str, parent: str, vacancies: dict, mixed: dict) -> None:
    plan = disorder_plan(text)
    assert plan.parent.reduced_composition == Composition(parent).reduced_composition
    assert plan.vacancies == pytest.approx(vacancies)
    assert plan.mixed == mixed
    assert plan.trivial == (not vacancies and not mixed)


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
