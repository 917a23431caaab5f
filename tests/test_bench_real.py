"""The real-data solve benchmark's case list and its "indexing found the reference's lattice" check."""

from __future__ import annotations

import json

import pytest

from xrdsolve.bench_real import (
    BenchRealSettings,
    _read_records,
    real_cases,
    reference_lattice_found,
    reference_rms,
    summarise,
)


def _cell(lattice, centring: str) -> dict:
    a, b, c = lattice.abc
    alpha, beta, gamma = lattice.angles
    return {"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma, "centring": centring}


def test_cases_are_the_single_phase_ones(real_data, real_manifest) -> None:
    """Every single-phase case with a pattern, instrument and CIF is listed (files exist); no multiphase one."""
    cases = real_cases(real_data)
    names = {c.name for c in cases}
    multi = {e["case"] for e in real_manifest if (e.get("cfg") or {}).get("multi")}
    assert multi and not names & multi
    assert {"pbso4_xray_lab", "pbso4_neutron_d1a", "alumina_neutron_bt1", "lab6_srm660c_lab"} <= names
    assert len(cases) >= 15
    for case in cases:
        assert case.pattern.is_file() and case.instrument.is_file() and case.reference.is_file()
    lbco = next(c for c in cases if c.name == "lbco_neutron_hrpt")
    assert lbco.limits == (10.2, 164.7)


@pytest.mark.parametrize(("case", "centring"), [("pbso4_xray_lab", "P"), ("alumina_neutron_bt1", "R")])
def test_reference_lattice_found(real_data, case, centring) -> None:
    """The reference's own conventional cell (1 % longer, as measured cells differ from CIFs) is found;
    a cell with one edge 5 % off, or the wrong R setting's partner of another volume, is not."""
    from pymatgen.core import Lattice

    from xrdsolve.refine.params import load_cif

    reference = load_cif(next(c for c in real_cases(real_data) if c.name == case).reference)[0]
    lat = reference.lattice
    assert reference_lattice_found(
        reference, [_cell(Lattice.from_parameters(*(1.01 * x for x in lat.abc), *lat.angles), centring)]
    )
    wrong = Lattice.from_parameters(lat.a, lat.b, 1.05 * lat.c, *lat.angles)
    assert not reference_lattice_found(reference, [_cell(wrong, centring)])
    assert not reference_lattice_found(reference, [])


def test_records_resume_and_summary(tmp_path) -> None:
    """Records of other settings and a torn last line are ignored; the summary counts ranks and cells."""
    settings = BenchRealSettings(time_budget=30.0)
    rows = [
        {"case": "a", "reference_rank": 1, "cell_found": True, "error": None, "settings": settings.key()},
        {"case": "b", "reference_rank": 7, "cell_found": True, "error": None, "settings": settings.key()},
        {"case": "c", "reference_rank": None, "cell_found": False, "error": None, "settings": {"k": 1}},
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"case": "d", "ref')
    done = _read_records(path, settings)
    assert sorted(done) == ["a", "b"]
    summary = summarise(list(done.values()), 5)
    assert (summary["rank1"], summary["within5"], summary["cell_found"]) == (1, 1, 2)


def test_disordered_reference_matches_refined_occupancies() -> None:
    """A mixed-site perovskite (Ba0.5La0.5)CoO3 matches a candidate refined to Ba0.45La0.55 at the same sites
    (and an ordered structure is still matched exactly); not one with Ba0.3La0.7, nor (Ba0.5Sr0.5)CoO3."""
    from pymatgen.core import Lattice, Structure

    def perovskite(ba: float, other: str = "La") -> Structure:
        sites = [{"Ba": ba, other: 1.0 - ba}, "Co", "O", "O", "O"]
        coords = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
        return Structure(Lattice.cubic(3.89), sites, coords)

    reference = perovskite(0.5)
    assert reference_rms(reference, perovskite(0.45)) == pytest.approx(0.0, abs=1e-6)
    assert reference_rms(reference, perovskite(0.3)) is None
    assert reference_rms(reference, perovskite(0.5, other="Sr")) is None
    ordered = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"], perovskite(0.5).frac_coords)
    assert reference_rms(ordered, ordered.copy()) == pytest.approx(0.0, abs=1e-6)
