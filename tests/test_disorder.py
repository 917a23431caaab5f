"""Occupancy models (issue 8): parameterisation, constraints, errors, one refinement, the CLI flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from disorder_trials import linio2, spinel
from pymatgen.core import Composition

from xrdsolve.refine.disorder import (
    OccupancyModel,
    RestrainedModel,
    apply_occupancy_model,
    parameterize_disordered,
)
from xrdsolve.refine.errors import RefineError, StructureError
from xrdsolve.refine.params import load_cif, parameterize


def _composition(ph, values) -> Composition:  # type: ignore[no-untyped-def]
    return ph.to_structure(values).composition


def test_exchange_keeps_composition_and_moves_species() -> None:
    ph = apply_occupancy_model(parameterize(linio2(0.0)), OccupancyModel.build(exchange=[("Li1", "Ni1")]))
    k = ph.names.index("exchange.Li1.Ni1")
    assert ph.kinds[k] == "occ"
    comp0 = _composition(ph, ph.values)
    v = ph.values.copy()
    v[k] = 0.07
    s = ph.to_structure(v)
    assert s.composition.almost_equals(comp0)
    li1 = next(site for site in s if site.label == "Li1")
    ni1 = next(site for site in s if site.label == "Ni1")
    assert li1.species["Ni"] == pytest.approx(0.07)
    assert li1.species["Li"] == pytest.approx(0.93)
    assert ni1.species["Li"] == pytest.approx(0.07)
    # the species given away stays ≥ 0: here the [0, 1] bound of x already guarantees it (no restraint row)
    assert ph.occ_ineq.shape[0] == 0
    # exchanging from the larger orbit: B1 (4 atoms) gives 2x per A1 site, so A1 ≥ 0 needs a restraint row
    rev = apply_occupancy_model(parameterize(spinel(1.0, 0.0)), OccupancyModel.build(exchange=[("B1", "A1")]))
    assert rev.occ_ineq.shape[0] == 1


def test_exchange_with_unequal_multiplicities_conserves_composition() -> None:
    # spinel primitive cell: A1 has 2 atoms, B1 has 4 -> B changes by m_A/m_B = 1/2 per unit x
    s = spinel(1.0, 0.0)  # A = Fe, B = Mn
    ph = apply_occupancy_model(parameterize(s), OccupancyModel.build(exchange=[("A1", "B1")]))
    k = ph.names.index("exchange.A1.B1")
    v = ph.values.copy()
    v[k] = 0.4
    out = ph.to_structure(v)
    assert out.composition.almost_equals(s.composition)
    b1 = next(site for site in out if site.label == "B1")
    assert b1.species["Fe"] == pytest.approx(0.2)


def test_mix_keeps_site_total_and_refine_occupancy_adds_vacancies() -> None:
    s = spinel(1.0, 1.0)
    ph = apply_occupancy_model(
        parameterize(s), OccupancyModel.build(mix={"B1": ["Fe", "Mn"]}, refine_occupancy=["O1"])
    )
    assert [n for n, k in zip(ph.names, ph.kinds, strict=True) if k == "occ"] == ["B1.occ.Fe", "O1.occ.O"]
    v = ph.values.copy()
    assert v[ph.names.index("B1.occ.Fe")] == pytest.approx(0.5)  # ordered CIF: start at equal fractions
    v[ph.names.index("B1.occ.Fe")] = 0.3
    v[ph.names.index("O1.occ.O")] = 0.9
    out = ph.to_structure(v)
    b1 = next(site for site in out if site.label == "B1")
    assert b1.species["Fe"] + b1.species["Mn"] == pytest.approx(1.0)
    assert b1.species["Mn"] == pytest.approx(0.7)
    assert out.composition["O"] == pytest.approx(0.9 * 8)


def test_mixed_and_refined_site_is_held_below_one_by_a_restraint() -> None:
    ph = apply_occupancy_model(
        parameterize(spinel(1.0, 1.0)),
        OccupancyModel.build(mix={"A1": ["Fe", "Mn"]}, refine_occupancy=["A1"]),
    )
    ia, ib = ph.names.index("A1.occ.Fe"), ph.names.index("A1.occ.Mn")
    v = ph.values.copy()
    v[ia], v[ib] = 0.7, 0.6  # total 1.3 violates total ≤ 1
    viol = ph.occ_ineq @ v + ph.occ_ineq_offset
    assert viol.min() == pytest.approx(-0.3)


def test_unknown_label_and_impossible_constraints_raise() -> None:
    s = linio2(0.0)
    with pytest.raises(RefineError, match="unknown site label"):
        parameterize_disordered([s], OccupancyModel.build(refine_occupancy=["Co1"]))
    with pytest.raises(RefineError, match="cannot be satisfied"):
        parameterize_disordered(
            [s], OccupancyModel.build(mix={"Ni1": ["Ni", "Co"]}, composition_restraint=("LiNiO2", 100.0))
        )
    with pytest.raises(RefineError, match="two different"):
        OccupancyModel.build(exchange=[("Li1", "Li1")])
    with pytest.raises(RefineError, match="at least two"):
        OccupancyModel.build(mix={"Ni1": ["Ni"]})
    with pytest.raises(RefineError, match="unknown chemical species"):
        OccupancyModel.build(mix={"Ni1": ["Ni", "Xx"]})
    with pytest.raises(RefineError, match="nothing to exchange"):
        apply_occupancy_model(parameterize(spinel(1.0, 1.0)), OccupancyModel.build(exchange=[("A1", "B1")]))


def test_cif_occupancy_above_one_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cif = tmp_path / "bad.cif"
    cif.write_text(
        "data_x\n_cell_length_a 4.2\n_cell_length_b 4.2\n_cell_length_c 4.2\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\n"
        "loop_\n_symmetry_equiv_pos_as_xyz\nx,y,z\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
        "_atom_site_fract_z\n_atom_site_occupancy\nFe1 Fe 0 0 0 1.2\nO1 O 0.5 0.5 0.5 1.0\n"
    )
    with pytest.raises(StructureError, match=r"Fe1 has occupancy 1\.2"):
        load_cif(cif)
    ok = tmp_path / "ok.cif"
    ok.write_text(cif.read_text().replace("1.2\n", "1.005\n"))  # rounding is accepted
    assert len(load_cif(ok)[0]) == 2


def test_composition_restraint_residual_is_zero_at_target() -> None:
    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.rietveld import RefineOptions, RietveldModel, _instrument_for

    s = spinel(0.5, 0.5)
    occ = OccupancyModel.build(
        mix={"A1": ["Fe", "Mn"], "B1": ["Fe", "Mn"]}, composition_restraint=("Fe3Mn3O8", 10.0)
    )
    ph = parameterize_disordered([s], occ)[0]
    pat = simulate_pattern(s, np.arange(15.0, 40.0, 0.05))
    inst, _ = _instrument_for(pat, None, None)
    model = RietveldModel(pat, [[ph]], inst, RefineOptions())
    rest = RestrainedModel(model, occ.composition_restraint)
    theta = torch.zeros(1, model.layout.total, dtype=torch.float64)
    theta[:, model.layout.phase_param_slice(0)] = torch.as_tensor(ph.values)
    r = rest.residuals(theta)
    # 3 composition rows (Fe, Mn, O); the two-species fractions need no inequality rows — all satisfied: zero
    assert r.shape == (1, 3)
    assert torch.allclose(r, torch.zeros_like(r), atol=1e-9)
    theta[:, model.layout.phase_param_slice(0).start + ph.names.index("A1.occ.Fe")] = 1.0
    assert float(r.abs().sum()) < float(rest.residuals(theta).abs().sum())


@pytest.mark.slow  # the batched two-trial version runs in the default suite (test_disorder_acceptance)
def test_refine_exchange_recovers_antisite_fraction() -> None:
    """One LiNiO2 pattern with 6 % Li/Ni exchange (Cu Kα, noise, zero shift): x within 0.01 and 3 esd."""
    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.rietveld import RefineOptions, refine

    truth = linio2(0.06)
    pat = simulate_pattern(truth, np.arange(15.0, 100.0, 0.03), profile={"zero": 0.02}, seed=3)
    r = refine(pat, linio2(0.0), exchange=[("Li1", "Ni1")], options=RefineOptions(n_background=4))
    li1 = next(site for site in r.phases[0].sites if site.label == "Li1")
    ni = li1.occupancy["Ni"]
    assert abs(ni.value - 0.06) < 0.01
    assert abs(ni.value - 0.06) <= 3 * ni.esd
    assert li1.occupancy["Li"].value + ni.value == pytest.approx(1.0)
    assert "exchange.Li1.Ni1" in r.parameter_names
    assert r.occupancy_model["exchange"] == [["Li1", "Ni1"]]


def _write_inputs(tmp_path):  # type: ignore[no-untyped-def]
    from pymatgen.io.cif import CifWriter

    from xrdsolve.refine.bench import simulate_pattern

    pat = simulate_pattern(linio2(0.05), np.arange(15.0, 90.0, 0.04), seed=5)
    xye = tmp_path / "p.xye"
    xye.write_text(
        "".join(
            f"{t:.4f} {y:.1f} {s:.3f}\n"
            for t, y, s in zip(pat.two_theta, pat.intensity, pat.sigma, strict=True)
        )
    )
    cif = tmp_path / "LiNiO2.cif"
    CifWriter(linio2(0.0)).write_file(str(cif))
    return xye, cif


@pytest.mark.slow
def test_cli_refine_with_exchange(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xrdsolve.cli import main

    xye, cif = _write_inputs(tmp_path)
    labels = [site.label for site in load_cif(cif)[0]]
    assert "Li1" in labels and "Ni1" in labels  # CifWriter keeps the labels
    out = tmp_path / "out"
    args = ["refine", str(xye), str(cif), "-o", str(out), "--radiation", "CuKa", "--background", "4"]
    assert main([*args, "--exchange", "Li1,Ni1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    sites = {s["label"]: s for s in summary["phases"][0]["sites"]}
    assert set(sites) == {"Li1", "Ni1", "O1"}
    ni_on_li = sites["Li1"]["occupancy"]["Ni"]
    assert abs(ni_on_li["value"] - 0.05) < 0.02 and ni_on_li["esd"] > 0
    assert summary["occupancy_model"]["exchange"] == [["Li1", "Ni1"]]
    refined = load_cif(next(out.glob("refined_*.cif")))[0]
    assert refined.composition.almost_equals(linio2(0.0).composition, rtol=1e-3)


def test_cli_bad_occupancy_flags(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from xrdsolve.cli import main

    xye, cif = _write_inputs(tmp_path)
    args = ["refine", str(xye), str(cif), "-o", str(tmp_path / "o"), "--radiation", "CuKa"]
    assert main([*args, "--refine-occupancy", "Co1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown site label" in err[0]
    assert main([*args, "--mix", "Ni1"]) == 2
