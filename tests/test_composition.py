"""Composition parsing, Z candidates and the random symmetric baseline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pymatgen.core import Composition

from xrdsolve.composition import (
    ANION_CONTACT_FRACTION,
    MIN_VOLUME_FRACTION,
    anion_radii,
    estimated_volume_per_formula,
    parse_composition,
    parse_elements,
    reduced_formula_and_units,
    z_candidates,
)
from xrdsolve.errors import UsageError
from xrdsolve.random_candidates import (
    crystal_system_of,
    random_symmetric_structures,
    spacegroup_prior,
    wyckoff_combinations,
)


def test_parse_plain_and_mixed_formulas() -> None:
    assert parse_composition("Fe2O3") == Composition("Fe2O3")
    mixed = parse_composition("(Mn,Fe)3O4")
    assert mixed["Mn"] == pytest.approx(1.5) and mixed["Fe"] == pytest.approx(1.5) and mixed["O"] == 4
    assert parse_composition("Li0.6CoO2")["Li"] == pytest.approx(0.6)


@pytest.mark.parametrize("bad", ["", "   ", "Xx2O3", "12"])
def test_bad_formulas_raise_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_composition(bad)


def test_parse_elements() -> None:
    assert [e.symbol for e in parse_elements("Li, Mn,O")] == ["Li", "Mn", "O"]
    with pytest.raises(UsageError, match="Qq"):
        parse_elements("Li,Qq")


def test_reduced_formula_units() -> None:
    reduced, units = reduced_formula_and_units(Composition("Ti2O4"))
    assert reduced == Composition("TiO2") and units == 2


def test_z_candidates_follow_cell_volume() -> None:
    tio2 = Composition("TiO2")
    # rutile: V = 62.4 Å3 with Z = 2; anatase: V = 136.3 Å3 with Z = 4
    assert 2 in z_candidates(tio2, 62.4)[:2]
    assert 4 in z_candidates(tio2, 136.3)[:2]
    assert all(z * 3 <= 64 for z in z_candidates(tio2))
    with pytest.raises(UsageError, match="atoms"):
        z_candidates(Composition("C61H40"))


def test_z_candidates_never_overfill_a_cell() -> None:
    """Mg3MnTe4 (P-4m2, 271 Å³ for one formula unit, 228 Å³ estimated) indexes on a 136 Å³ I-centred sub-cell.
    When no Z fitted, the two nearest its volume were offered, and Z 2 (16 atoms at 8.5 Å³ each, which only
    an I-centred group can hold) was refined and ranked first. Only Z 1 is offered now, even with no volume
    tolerance; a cell of half that volume gets none."""
    comp = Composition("Mg3MnTe4")
    assert z_candidates(comp, 136.0) == [1]
    assert z_candidates(comp, 136.0, tolerance=math.inf) == [1]
    assert z_candidates(comp, 68.0) == []
    assert z_candidates(comp, 8 * 228.0, tolerance=math.inf)[0] == 8
    assert MIN_VOLUME_FRACTION * estimated_volume_per_formula(comp) < 136.0


def test_a_cell_too_small_for_a_formula_unit_gets_no_z_its_groups_cannot_hold() -> None:
    """The solve's Z for a cell (pipeline._cell_zs): Mg3MnTe4's 136 Å³ I-centred sub-cell gets none (its one
    possible Z, 1, fits no I group: every I orbit is even, Mn is one atom), and its supercells are tried
    instead; the 271 Å³ P cell gets Z 1 in P-4m2."""
    from xrdsolve.pipeline import _cell_zs

    comp = Composition("Mg3MnTe4")
    assert _cell_zs(comp, 136.0, [139, 97, 119], 4) == []
    assert _cell_zs(comp, 271.0, [123, 115], 4) == [1]


def test_volume_estimate_is_within_a_factor_of_two_of_real_cells() -> None:
    for formula, volume_per_fu in [("TiO2", 31.2), ("NaCl", 44.9), ("Al2O3", 42.5), ("LaB6", 71.9)]:
        est = estimated_volume_per_formula(Composition(formula))
        assert 0.5 < est / volume_per_fu < 2.0, formula


def test_spacegroup_prior_restricts_to_crystal_system() -> None:
    prior = spacegroup_prior(["tetragonal"])
    assert set(prior) == set(range(75, 143))
    assert sum(prior.values()) == pytest.approx(1.0)
    assert max(prior, key=prior.__getitem__) == 139  # I4/mmm is the most common tetragonal group
    assert crystal_system_of(225) == "cubic" and crystal_system_of(1) == "triclinic"


def test_random_candidates_have_composition_symmetry_and_reproduce() -> None:
    comp = Composition("TiO2")
    first = random_symmetric_structures(comp, [2, 4], 6, seed=3, crystal_systems=["tetragonal"])
    again = random_symmetric_structures(comp, [2, 4], 6, seed=3, crystal_systems=["tetragonal"])
    assert len(first) == 6
    for (s1, spec1), (s2, spec2) in zip(first, again, strict=True):
        assert spec1 == spec2
        assert s1.composition.reduced_composition == comp
        assert len(s1) == 3 * spec1.z
        assert 75 <= spec1.spacegroup <= 142
        assert s1.lattice.abc == pytest.approx(s2.lattice.abc)


def test_random_candidates_in_a_given_cell() -> None:
    cell = (4.59, 4.59, 2.96, 90.0, 90.0, 90.0)
    out = random_symmetric_structures(Composition("TiO2"), [2], 4, seed=0, spacegroups=[136], lattice=cell)
    assert out, "pyxtal should place TiO2 (Z=2) in P4_2/mnm"
    for structure, spec in out:
        assert spec.lattice_given and spec.spacegroup == 136
        assert structure.lattice.abc == pytest.approx(cell[:3], abs=1e-6)


@pytest.mark.parametrize(
    ("spacegroup", "counts"),
    [(225, [4, 4, 8]), (12, [4, 4, 4, 16]), (62, [4, 4, 16]), (136, [2, 4]), (1, [3, 12])],
)
def test_wyckoff_combinations_are_valid_and_simplest_first(spacegroup: int, counts: list[int]) -> None:
    from pyxtal.symmetry import Group

    group = Group(spacegroup)
    mult = {wp.get_label(): wp.multiplicity for wp in group}
    free = {wp.get_label(): wp.get_dof() > 0 for wp in group}
    combos = wyckoff_combinations(spacegroup, counts)
    assert combos
    sizes = [sum(len(sites) for sites in combo) for combo in combos]
    assert sizes == sorted(sizes)
    for combo in combos:
        assert [sum(mult[s] for s in sites) for sites in combo] == counts
        fixed = [s for sites in combo for s in sites if not free[s]]
        assert len(fixed) == len(set(fixed))  # a site without free coordinates holds one atom type
    if spacegroup == 225:  # NaCl-like ternary: the three special sites only
        assert {tuple(sorted(s for sites in combo for s in sites)) for combo in combos} == {
            ("4a", "4b", "8c")
        }


def test_wyckoff_combinations_impossible_counts() -> None:
    assert wyckoff_combinations(225, [3]) == []  # no site of Fm-3m holds 3 atoms


def test_compositions_proposed_from_elements_and_cell_volume() -> None:
    from xrdsolve.composition import propose_compositions

    def proposals(elements: str, volume: float) -> list[tuple[str, int]]:
        return [(p.formula.reduced_formula, p.z) for p in propose_compositions(elements, volume)]

    assert proposals("Ti,O", 62.4)[0] == ("TiO2", 2)  # rutile cell
    assert proposals("Li,Co,O", 96.9)[0] == ("LiCoO2", 3)  # R-3m hexagonal cell
    assert ("Fe2O3", 6) in proposals("Fe,O", 302.0)  # hematite: ranked by Rietveld later
    assert proposals("Al,Ni", 28.0)[0] == ("AlNi", 1)  # metals only: no charge balance asked
    best = propose_compositions("Ba,Ti,O", 64.4)[0]
    assert (best.formula.reduced_formula, best.oxidation_states) == ("BaTiO3", {"Ba": 2, "Ti": 4, "O": -2})
    assert proposals("O,F", 50.0) == []  # anions only: nothing is charge balanced
    with pytest.raises(UsageError, match="twice"):
        propose_compositions("Ti,Ti,O", 62.4)
    with pytest.raises(UsageError, match="unknown element"):
        propose_compositions("Ti,Xx", 62.4)


def test_enumeration_puts_one_of_each_distinct_fixed_structure_first_most_open_first() -> None:
    """LaNbO3 (Z = 1) in a P4/mmm cell: the 64 Wyckoff assignments hold few distinct fixed structures (origin
    shifts); the perovskite, whose closest contacts are the most open, is the first candidate built."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    from xrdsolve.random_candidates import distinct_fixed_first, enumerated_symmetric_structures

    cell = (3.91, 3.91, 3.918, 90.0, 90.0, 90.0)
    combos = wyckoff_combinations(123, [1, 1, 3])
    ordered = distinct_fixed_first(123, ["La", "Nb", "O"], combos, cell)
    assert len(ordered) < len(combos)
    assert all(c in combos for c in ordered)
    built = enumerated_symmetric_structures(Composition("LaNbO3"), 1, [123], 3, lattice=cell, seed=0)
    perovskite = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.91), ["La", "Nb", "O"], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]
    )
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    assert matcher.fit(built[0][0], perovskite)
    # no two of the fixed assignments built are the same crystal
    fixed = [s for s, _ in enumerated_symmetric_structures(Composition("LaNbO3"), 1, [123], 8, lattice=cell)]
    assert not any(matcher.fit(a, b) for i, a in enumerate(fixed[:4]) for b in fixed[i + 1 : 4])


@pytest.mark.parametrize(
    "spacegroup, n_settings",
    [(47, 1), (71, 1), (73, 1), (17, 3), (25, 3), (65, 3), (61, 2), (62, 6), (63, 6)],
)
def test_one_axis_order_per_distinct_orthorhombic_setting(spacegroup: int, n_settings: int) -> None:
    """The axis orders tried in an orthorhombic cell are one per distinct setting of the group (International
    Tables A, table 4.3.2.1, settings equal up to an origin shift counted once): Pmmm, Immm and Ibca (whose
    Icab is Ibca shifted by ¼ along a) look the same along every edge, P222₁, Pmm2 and Cmmm have three
    (which edge is special), Pbca two (Pbca, Pcab) and Pnma, Cmcm six."""
    from xrdsolve.random_candidates import distinct_axis_orders

    orders = distinct_axis_orders(spacegroup)
    assert len(orders) == n_settings
    assert orders[0] == (0, 1, 2) and len(set(orders)) == len(orders)


@pytest.mark.parametrize("spacegroup", [47, 65, 61])
def test_axis_orders_left_out_build_no_new_structure(spacegroup: int) -> None:
    """Every fixed-site structure of NaCl (Z 1 in Pmmm, 2 in Cmmm, 4 in Pbca) in a cell of three different
    edges that is built along an axis order left out is one built along a kept order: leaving the order out
    removes only repeats. (Over-pruned orders would build fewer distinct structures.)"""
    import itertools

    import numpy as np
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from xrdsolve.random_candidates import (
        _ORTHO_PERMUTATIONS,
        distinct_axis_orders,
        permuted_cell,
        place_on_wyckoff_sites,
    )

    z = {47: 1, 65: 2, 61: 4}[spacegroup]
    cell = (3.1, 3.7, 4.3, 90.0, 90.0, 90.0) if z < 4 else (5.1, 5.9, 6.7, 90.0, 90.0, 90.0)
    combos = wyckoff_combinations(spacegroup, [z, z], 64)
    assert combos

    def built(orders: tuple[tuple[int, int, int], ...]) -> list:
        rng = np.random.default_rng(0)
        out = []
        for combo, perm in itertools.product(combos, orders):
            s = place_on_wyckoff_sites(spacegroup, ["Na", "Cl"], combo, permuted_cell(cell, perm), rng)
            if s is not None:
                out.append(s)
        return out

    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    kept = [group[0] for group in matcher.group_structures(built(distinct_axis_orders(spacegroup)))]
    everything = [group[0] for group in matcher.group_structures(built(_ORTHO_PERMUTATIONS))]
    assert len(kept) == len(everything)
    assert all(any(matcher.fit(s, k) for k in kept) for s in everything)


def _centred_by(structure: object, translation: tuple[float, float, float]) -> bool:
    """Whether every atom moved by ``translation`` (fractional) lands on an atom of the same species."""
    import numpy as np

    frac = np.asarray(structure.frac_coords)  # type: ignore[attr-defined]
    species = [str(s.specie) for s in structure]  # type: ignore[attr-defined]
    moved = frac + np.asarray(translation)
    for x, sp in zip(moved, species, strict=True):
        d = frac - x
        d -= np.round(d)
        close = np.linalg.norm(d, axis=1) < 1e-6
        if not any(close[j] and species[j] == sp for j in range(len(species))):
            return False
    return True


@pytest.mark.parametrize("spacegroup", [63, 38])
@pytest.mark.parametrize("centring", ["A", "B", "C"])
def test_axis_orders_on_a_centred_cell_keep_its_centring(spacegroup: int, centring: str) -> None:
    """In a cell indexed A, B or C centred, Cmcm and Amm2 are placed only along the axis orders that put their
    centring on the cell's: every structure built is invariant under the cell's centring translation, and
    the orders left out build none that is."""
    import numpy as np

    from xrdsolve.random_candidates import (
        axis_orders_on,
        distinct_axis_orders,
        permuted_cell,
        place_on_wyckoff_sites,
    )
    from xrdsolve.refine.indexing.solution import CENTRING_TRANSLATIONS

    translation = CENTRING_TRANSLATIONS[centring][0]
    cell = (5.3, 6.9, 8.7, 90.0, 90.0, 90.0)
    combo = wyckoff_combinations(spacegroup, [4, 4] if spacegroup == 63 else [2, 2], 1)[0]
    kept = axis_orders_on(spacegroup, centring)
    assert 0 < len(kept) < len(distinct_axis_orders(spacegroup))
    assert axis_orders_on(spacegroup, "P") == distinct_axis_orders(spacegroup)
    rng = np.random.default_rng(0)
    for perm in distinct_axis_orders(spacegroup):
        s = place_on_wyckoff_sites(spacegroup, ["Na", "Cl"], combo, permuted_cell(cell, perm), rng)
        assert s is not None
        # the structure's axes are the cell's edges perm[0], perm[1], perm[2]
        assert _centred_by(s, tuple(translation[p] for p in perm)) == (perm in kept)


def test_anion_radii_are_the_full_charge_anions() -> None:
    assert anion_radii(Composition("Rb3LuO3")) == {"O": pytest.approx(1.26)}
    assert set(anion_radii(Composition("V3O5F"))) == {"O", "F"}
    assert set(anion_radii(Composition("KCeGeSe4"))) == {"Se"}
    assert anion_radii(Composition("LiS4")) == {}  # a polysulfide: S–S bonds, no S²⁻
    assert anion_radii(Composition("HoGeRh")) == {}  # an intermetallic
    assert anion_radii(Composition("SiC")) == {}  # C⁴⁻ has no tabulated radius


def test_full_charge_anions_of_real_crystals_keep_their_contact_distance(shared_data: Path) -> None:
    """The anion–anion limit the prescreen imposes holds in at least 99 % of the MP-20 training rows that
    have full-charge anions (the one rule of crystal chemistry the Wyckoff search leans on)."""
    import numpy as np

    from xrdsolve.generate.data import load_split

    checked, broken = 0, []
    for record in load_split("mp20", "train"):
        structure = record.structure
        radii = anion_radii(structure.composition)
        if not radii:
            continue
        checked += 1
        symbols = [site.specie.symbol for site in structure]
        r = np.array([radii.get(s, np.nan) for s in symbols])
        limit = ANION_CONTACT_FRACTION * (r[:, None] + r[None, :])
        dist = structure.distance_matrix + np.diag(np.full(len(structure), np.inf))
        if np.any(dist < np.nan_to_num(limit, nan=0.0)):
            broken.append(structure.composition.reduced_formula)
    assert checked > 300
    assert len(broken) <= 0.01 * checked, broken


def test_wyckoff_sampler_keeps_full_charge_anions_apart() -> None:
    import numpy as np

    from xrdsolve.random_candidates import WyckoffSampler

    cell = (5.0, 5.0, 5.0, 90.0, 90.0, 90.0)
    frac = np.array([[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.3, 0.0, 0.0]]])  # O–O 1.5 Å, Mg–O ≥ 3.3 Å
    covalent = WyckoffSampler(1, ["Mg", "O"], [["1a"], ["1a", "1a"]], cell)
    ionic = WyckoffSampler(1, ["Mg", "O"], [["1a"], ["1a", "1a"]], cell, {"O": 1.26})
    assert covalent.apart(frac)[0]
    assert not ionic.apart(frac)[0]
    assert ionic.distance_limits[1, 2] == pytest.approx(ANION_CONTACT_FRACTION * 2 * 1.26)
    # cation–anion pairs keep their covalent limit
    assert ionic.distance_limits[0, 1] == pytest.approx(covalent.distance_limits[0, 1])
