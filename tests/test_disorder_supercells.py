"""Defect supercells (issue 8): HNF enumeration, symmetry-distinct orderings, explosion guard, the decision."""

from __future__ import annotations

import json

import numpy as np
import pytest
from disorder_trials import la05_layered, la_nbo3_parent, run_order_trials
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from xrdsolve.refine.errors import RefineError
from xrdsolve.refine.supercells import (
    decide,
    disordered_average,
    enumerate_supercells,
    hamilton_critical_ratio,
    hnf_matrices,
)


def test_hnf_counts_match_the_known_sequence() -> None:
    # number of sublattices of index n of Z^3 (OEIS A001001): 7, 13, 35, 31
    assert [len(hnf_matrices(n)) for n in (2, 3, 4, 5)] == [7, 13, 35, 31]
    for m in hnf_matrices(4):
        assert round(abs(np.linalg.det(m))) == 4


def test_half_vacancies_on_a_simple_cubic_site_give_three_orderings_at_multiplicity_two() -> None:
    # (001) layers, (110) rows and the (111) rock-salt arrangement: the three index-2 orderings of a cubic lattice
    enum = enumerate_supercells(la_nbo3_parent(), "La1", 0.5, max_mult=2)
    assert enum.n_distinct == 3 and not enum.capped
    assert sorted(c.spacegroup for c in enum.candidates) == ["Fm-3m", "P4/mmm", "P4/mmm"]
    for c in enum.candidates:
        assert c.multiplicity == 2
        assert c.structure.composition.reduced_formula == "LaNb2O6"
    # the layered truth of the acceptance trials is one of them
    truth = la05_layered(3.91, 1.0, 0.0, (0.5, 0.5, 0.5))
    matcher = StructureMatcher(scale=False)
    assert sum(matcher.fit(c.structure, truth) for c in enum.candidates) == 1


def test_capped_enumeration_reports_it() -> None:
    enum = enumerate_supercells(la_nbo3_parent(), "La1", 0.5, max_mult=2, max_candidates=2)
    assert enum.capped and len(enum.candidates) == 2 and enum.n_distinct == 3
    assert "capped" in enum.message


def test_bad_requests_raise_clear_errors() -> None:
    parent = la_nbo3_parent()
    with pytest.raises(RefineError, match="arrangements to examine"):
        enumerate_supercells(parent, "O1", 0.5, max_mult=8)
    with pytest.raises(RefineError, match="unknown site label"):
        enumerate_supercells(parent, "Sr1", 0.5)
    with pytest.raises(RefineError, match="needs a supercell larger"):
        enumerate_supercells(parent, "La1", 0.3, max_mult=2)
    with pytest.raises(RefineError, match="between 0 and 1"):
        enumerate_supercells(parent, "La1", 1.5)


def test_disordered_average_has_fractional_occupancy() -> None:
    s = disordered_average(la_nbo3_parent(), "La1", 0.5)
    la = next(site for site in s if site.label == "La1")
    assert la.species["La"] == pytest.approx(0.5)
    sub = disordered_average(la_nbo3_parent(), "La1", 0.25, substitute="Sr")
    la = next(site for site in sub if site.label == "La1")
    assert la.species["Sr"] == pytest.approx(0.25) and la.species["La"] == pytest.approx(0.75)


def test_hamilton_test_numbers() -> None:
    # R_{1,1000,0.005}: sqrt(1 + F(0.995; 1, 1000)/1000) ≈ sqrt(1 + 7.9/1000)
    assert hamilton_critical_ratio(1, 1000, 0.005) == pytest.approx(np.sqrt(1 + 7.90 / 1000), rel=2e-4)
    same = decide(1000.0, 20, 999.0, 25, 4000, 0.001)
    assert not same["ordered"] and same["bic_ordered"] > same["bic_disordered"]
    better = decide(1500.0, 20, 1000.0, 25, 4000, 0.001)
    assert better["ordered"] and better["r_ratio"] > better["r_critical"]


@pytest.mark.slow  # two trials, but 4 refinements each (≈ 1–3 min CPU): too slow for the default suite
def test_order_and_disorder_are_told_apart_two_trials(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xrdsolve.refine.supercells import write_order_outputs

    ordered = run_order_trials(1, True, seed=7, two_theta_max=70.0)[0]
    disordered = run_order_trials(1, False, seed=7, two_theta_max=70.0)[0]
    assert ordered.ordered and ordered.best is not None and ordered.best.multiplicity == 2
    assert ordered.best.spacegroup == "P4/mmm" and ordered.best.structure.lattice.abc[2] > 7.0
    assert not disordered.ordered
    paths = write_order_outputs(ordered, tmp_path)
    summary = json.loads((tmp_path / "order_decision.json").read_text())
    assert summary["decision"] == "ordered" and summary["multiplicity"] == 2
    assert len([p for p in paths if p.startswith("x2")]) == 3
    assert "_atom_site_occupancy" in (tmp_path / "disordered.cif").read_text()


def _cscl() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], labels=["Cs1", "Cl1"]
    )


def test_antisite_orderings_keep_the_composition_and_are_new_structures() -> None:
    # half the Cs swapped: the disordered average is a one-atom bcc cell, CsCl itself a 2-fold ordering of it, so
    # the 2-fold supercells of CsCl have multiplicity 4 (max_mult counts against the average's primitive cell)
    with pytest.raises(RefineError, match="needs a supercell larger"):
        enumerate_supercells(_cscl(), "Cs1", 0.5, max_mult=2, exchange_with="Cl1")
    enum = enumerate_supercells(_cscl(), "Cs1", 0.5, max_mult=4, exchange_with="Cl1")
    # 7 index-2 lattices × C(2,1) × C(2,1) arrangements, before symmetry reduction
    assert enum.n_arrangements == 7 * 4
    assert enum.n_distinct >= 1
    parent = _cscl()
    matcher = StructureMatcher(scale=False)
    for c in enum.candidates:
        assert c.multiplicity == 4
        assert c.structure.composition.reduced_formula == "CsCl"
        assert len(c.structure) == 4
        assert not matcher.fit(c.structure, parent)
        # an anti-site Cs on a former Cl position makes Cs–Cs contacts at a·√3/2 (none in ordered CsCl)
        cs = [i for i, s in enumerate(c.structure) if s.specie.symbol == "Cs"]
        cs_cs = min(c.structure.get_distance(i, j) for i in cs for j in cs if i != j)
        assert cs_cs == pytest.approx(4.12 * 3**0.5 / 2, abs=1e-6)


def test_antisite_disordered_average_keeps_the_composition() -> None:
    s = disordered_average(_cscl(), "Cs1", 0.25, exchange_with="Cl1")
    cs = next(site for site in s if site.label == "Cs1")
    cl = next(site for site in s if site.label == "Cl1")
    assert cs.species["Cs"] == pytest.approx(0.75) and cs.species["Cl"] == pytest.approx(0.25)
    assert cl.species["Cl"] == pytest.approx(0.75) and cl.species["Cs"] == pytest.approx(0.25)
    assert s.composition.reduced_formula == "CsCl"


def test_antisite_requests_are_checked() -> None:
    with pytest.raises(RefineError, match="another site label"):
        enumerate_supercells(_cscl(), "Cs1", 0.5, exchange_with="Na1")
    with pytest.raises(RefineError, match="either a substitute"):
        enumerate_supercells(_cscl(), "Cs1", 0.5, substitute="K", exchange_with="Cl1")
    two_cs = Structure(Lattice.cubic(4.0), ["Cs", "Cs"], [[0, 0, 0], [0.5, 0.5, 0.5]], labels=["Cs1", "Cs2"])
    with pytest.raises(RefineError, match="same species"):
        enumerate_supercells(two_cs, "Cs1", 0.5, exchange_with="Cs2")


def test_a_parent_in_the_ordered_cell_gets_orderings_inside_its_own_cell() -> None:
    """A solve that indexed the 1×1×2 cell hands over a doubled parent whose apical O moved 0.3 Å (not reducible
    to the 5-atom perovskite): the La-vacancy ordering inside that cell (det 1) must be a candidate."""
    parent = la_nbo3_parent(3.91)
    parent.make_supercell([1, 1, 2])
    for i, site in enumerate(parent):
        site.label = site.species_string + "1"
        if site.species_string == "O" and abs(site.frac_coords[2] - 0.25) < 1e-6:
            parent.translate_sites([i], [0, 0, 0.3 / parent.lattice.c], frac_coords=True)
    assert len(parent.get_primitive_structure()) == 10
    enum = enumerate_supercells(parent, "La1", 0.5, max_mult=2)
    own_cell = [c for c in enum.candidates if len(c.structure) == 9]
    assert len(own_cell) == 1 and own_cell[0].multiplicity == 1
    assert own_cell[0].structure.composition.reduced_formula == "LaNb2O6"
