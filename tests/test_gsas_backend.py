"""GSAS-II backend (refine.gsas): clear errors without GSAS-II; with a local GSAS-II build, cross-checks against
our engine on simulated patterns and against G2_validation.json on real data. Tests that need GSAS-II skip
when it is not importable (CI has no GSAS-II)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import rutile
from pymatgen.core import Lattice, Structure

from xrdsolve.refine import gsas
from xrdsolve.refine.bench import SimulatedPattern, simulate_pattern
from xrdsolve.refine.errors import RefineError, StructureError
from xrdsolve.refine.physics import Instrument
from xrdsolve.refine.rietveld import DEFAULT_STRATEGY, RefineOptions, Stage, refine

needs_gsas = pytest.mark.skipif(
    not gsas.gsas_available(), reason="GSAS-II (GSASII.GSASIIscriptable) not importable"
)

#: both engines see the same physics: Cu Kα doublet, Bragg–Brentano, unpolarised, anomalous f′ f″ on
INSTRUMENT = Instrument.lab("CuKa", anomalous=True)
GRID = np.arange(15.0, 120.0, 0.02)


def ceria() -> Structure:
    s = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.4113), ["Ce", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    s.add_site_property("b_iso", [0.4 if str(site.specie) == "Ce" else 0.8 for site in s])
    return s


def perturbed(s: Structure, cell: float = 1.003) -> Structure:
    out = s.copy()
    out.scale_lattice(s.volume * cell**3)
    return out


def one_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- no GSAS-II
def test_import_without_gsas_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With GSASII unimportable the module still works and refine_gsas names the missing package."""
    monkeypatch.setitem(sys.modules, "GSASII", None)
    monkeypatch.setitem(sys.modules, "GSASII.GSASIIscriptable", None)
    gsas.gsas_available.cache_clear()
    try:
        assert gsas.gsas_available() is False
        pat = simulate_pattern(rutile(), GRID, INSTRUMENT, seed=0)
        with pytest.raises(RefineError, match="GSAS-II is not installed"):
            gsas.refine_gsas(pat, rutile())
    finally:
        gsas.gsas_available.cache_clear()


def test_bad_input_is_rejected_before_gsas() -> None:
    pat = simulate_pattern(rutile(), GRID, INSTRUMENT, seed=0)
    bad = SimulatedPattern(
        pat.two_theta, np.where(np.arange(GRID.size) == 7, np.nan, pat.intensity), pat.radiation, pat.geometry
    )
    with pytest.raises(RefineError, match="non-finite"):
        gsas.refine_gsas(bad, rutile())
    with pytest.raises(StructureError, match="no atoms"):
        gsas.refine_gsas(pat, Structure(Lattice.cubic(4.0), [], []))
    with pytest.raises(RefineError, match="unknown parameter group"):
        gsas.refine_gsas(pat, rutile(), stages=(Stage("x", ("scale", "texture")),))
    with pytest.raises(RefineError, match="empty 2θ range"):
        gsas.refine_gsas(pat, rutile(), two_theta_min=100.0, two_theta_max=50.0)


# ---------------------------------------------------------------------------------------------- with GSAS-II
@needs_gsas
def test_setting_kept_or_transformed_to_gsas_standard() -> None:
    """Pnma input is passed as it is; the same structure in the Pbnm setting is transformed to Pnma."""
    from conftest import REAL_DATA

    from xrdsolve.refine.gsas.inputs import g2_setting
    from xrdsolve.refine.params import load_cif

    pb = load_cif(REAL_DATA / "pbso4_xray_lab" / "PbSO4.cif")[0]
    same, symbol = g2_setting(pb)
    assert symbol == "P n m a" and same is pb
    pbnm = pb.copy()
    pbnm.make_supercell([[0, 0, 1], [1, 0, 0], [0, 1, 0]])  # (a, b, c) -> (c, a, b)
    back, symbol = g2_setting(pbnm)
    assert symbol == "P n m a"
    np.testing.assert_allclose(back.lattice.abc, pb.lattice.abc, atol=1e-6)
    assert sorted(set(back.labels)) == sorted(set(pbnm.labels))


@needs_gsas
@pytest.mark.slow
def test_synthetic_rutile_matches_our_engine(tmp_path: Path) -> None:
    """Simulated rutile (Poisson noise), refined from a +0.3 % cell by both engines: same lattice within 3
    combined esd, both within 4 esd of the truth, Rwp within 1 % absolute, both at the noise floor."""
    truth = rutile()
    pat = simulate_pattern(truth, GRID, INSTRUMENT, seed=1)
    start = perturbed(truth)
    ours = one_thread(refine, pat, start, instrument=INSTRUMENT)
    theirs = gsas.refine_gsas(pat, start, workdir=tmp_path)
    assert theirs.status == "converged", theirs.status
    assert abs(ours.rwp - theirs.rwp) < 0.01, (ours.rwp, theirs.rwp)
    assert theirs.gof < 1.2 and ours.gof < 1.2, (ours.gof, theirs.gof)
    for name, true in (("a", 4.5937), ("c", 2.9587)):
        a, b = ours.phases[0].lattice[name], theirs.phases[0].lattice[name]
        assert abs(a.value - b.value) < 3 * np.hypot(a.esd, b.esd), (name, a, b)
        assert abs(b.value - true) < 4 * b.esd, (name, b, true)
    o_ours = next(s for s in ours.phases[0].sites if s.label.startswith("O"))
    o_gsas = next(s for s in theirs.phases[0].sites if s.label.startswith("O"))
    assert o_gsas.multiplicity == 4 and o_gsas.wyckoff == o_ours.wyckoff
    x_a, x_b = o_ours.xyz[0], o_gsas.xyz[0]
    assert abs(x_a.value - x_b.value) < 3 * np.hypot(x_a.esd, x_b.esd), (x_a, x_b)
    assert abs(x_b.value - 0.3048) < 4 * x_b.esd
    # the result is a full RefinementResult: summary, CIF, plot
    summary = theirs.to_summary_dict()
    assert summary["phases"][0]["spacegroup_number"] == 136
    assert "_cell_length_a 4.59" in theirs.to_cif()
    import matplotlib

    matplotlib.use("Agg")
    ax = theirs.plot()
    assert ax.lines
    np.testing.assert_allclose(
        theirs.phase_curves[0] + theirs.background_curve, theirs.calculated, rtol=1e-9, atol=1e-6
    )
    assert (tmp_path / "xrdsolve.gpx").exists()


def _mp20(n: int) -> list[tuple[str, Structure]]:
    from conftest import mp20_test_structures

    return mp20_test_structures(n)


@needs_gsas
@pytest.mark.slow
def test_synthetic_mp20_backend_vs_ours() -> None:
    """10 MP-20 test structures (≤ 24 atoms), simulated and refined from a +0.3 % cell by both engines:
    prints one line per structure; Rwp within 1 % absolute in ≥ 80 % and a, b, c within 3 combined esd in
    ≥ 70 % of the structures (measured 2026-11-25: 9/10 and 8/10; the misses are our engine's)."""
    rwp_ok = lat_ok = 0
    cases = _mp20(10)
    for k, (mid, s) in enumerate(cases):
        pat = simulate_pattern(s, GRID, INSTRUMENT, seed=k)
        start = perturbed(s)
        ours = one_thread(refine, pat, start, instrument=INSTRUMENT)
        theirs = gsas.refine_gsas(pat, start)
        lo, lg = ours.phases[0].lattice, theirs.phases[0].lattice
        dev = {
            n: (lo[n].value - lg[n].value) / max(float(np.hypot(lo[n].esd, lg[n].esd)), 1e-12) for n in "abc"
        }
        rwp_ok += abs(ours.rwp - theirs.rwp) < 0.01
        lat_ok += all(abs(d) < 3 for d in dev.values())
        print(
            f"{mid} {ours.phases[0].spacegroup}: Rwp ours {100 * ours.rwp:.3f} gsas {100 * theirs.rwp:.3f} % "
            f"({ours.status}/{theirs.status}); (ours-gsas)/esd "
            + " ".join(f"{n} {d:+.2f}" for n, d in dev.items())
        )
    assert rwp_ok >= 0.8 * len(cases), rwp_ok
    assert lat_ok >= 0.7 * len(cases), lat_ok


@needs_gsas
def test_two_phases_partials_and_weight_fractions() -> None:
    """Rutile + CeO2: per-phase curves from GSAS-II's partials add up to the calculated pattern; both cells
    recovered; weight fractions sum to 1 with esds."""
    inst_grid = np.arange(20.0, 110.0, 0.02)
    a = simulate_pattern(rutile(), inst_grid, INSTRUMENT, seed=1, background=(100.0, 0.0, 0.0))
    b = simulate_pattern(
        ceria(), inst_grid, INSTRUMENT, seed=2, background=(100.0, 0.0, 0.0), peak_counts=1e4
    )
    pat = SimulatedPattern(inst_grid, a.intensity + b.intensity, a.radiation, a.geometry)
    r = gsas.refine_gsas(pat, [rutile(), ceria()])
    assert r.status == "converged" and r.gof < 1.2, (r.status, r.gof)
    assert len(r.phase_curves) == 2
    total = r.phase_curves[0] + r.phase_curves[1] + r.background_curve
    assert np.max(np.abs(total - r.calculated)) < 1e-3 * np.max(r.calculated)
    for ph, true in zip(r.phases, (4.5937, 5.4113), strict=True):
        assert abs(ph.lattice["a"].value - true) < 4 * ph.lattice["a"].esd, (ph.name, ph.lattice["a"])
    wf = [ph.weight_fraction for ph in r.phases]
    assert abs(sum(w.value for w in wf) - 1.0) < 1e-9
    assert all(w.esd > 0 for w in wf)


class _FcjPeaks:
    """GSAS-II's FCJ pseudo-Voigt (pypsvfcjo: S/L = H/L = SH/L / 2) and ours for one peak at 2θ (degrees) with
    GSAS-II's σ² (centideg²), γ (centideg) and SH/L, on a 0.002° grid ±3° around it."""

    def __init__(self, two_theta: float, sig: float, gam: float, shl: float) -> None:
        from GSASII import pypowder  # type: ignore[import-not-found]

        from xrdsolve.refine.physics import tch_widths

        self.two_theta = two_theta
        self.x = np.arange(two_theta - 3.0, two_theta + 3.0, 0.002)
        self.gsas2 = 100.0 * np.asarray(
            pypowder.pypsvfcjo(len(self.x), (self.x - two_theta).astype(np.float32), two_theta, sig, gam, shl)
        )
        f64 = torch.float64
        theta = torch.tensor([np.radians(two_theta / 2)], dtype=f64)
        zero = torch.zeros(1, dtype=f64)
        lorentz_x = torch.tensor([gam * np.cos(theta.item())], dtype=f64)
        self.fwhm, self.eta = tch_widths(theta, zero, zero, torch.tensor([sig], dtype=f64), lorentz_x, zero)
        self.gamma = torch.tensor([gam], dtype=f64)

    def ours(self, asym: float, rule: str = "converged") -> np.ndarray:
        from xrdsolve.refine.physics.profile import axial_subpeaks, pseudo_voigt

        tt, a = (torch.tensor([v], dtype=torch.float64) for v in (self.two_theta, asym))
        _, off, w = axial_subpeaks(tt, a, self.fwhm, self.gamma, rule)
        grid = torch.as_tensor(self.x)
        return sum(
            w[i] * pseudo_voigt(grid - self.two_theta - off[i], self.fwhm[0], self.eta[0])
            for i in range(len(w))
        ).numpy()

    def centroid(self, y: np.ndarray) -> float:
        return float((self.x * y).sum() / y.sum())


@needs_gsas
@pytest.mark.parametrize(
    ("two_theta", "sig", "gam", "shl"),
    [(10.0, 2.0, 0.3, 0.05), (15.0, 1.0, 0.2, 0.04), (165.0, 2.0, 0.3, 0.05)],
)
def test_fcj_profile_matches_gsas2(two_theta: float, sig: float, gam: float, shl: float) -> None:
    """Our asymmetric peak with asym = SH/L equals GSAS-II's FCJ pseudo-Voigt where GSAS-II's quadrature is
    converged (asymmetry span ≫ Lorentzian width): within 1.5 % of the peak height and 0.001° in centroid;
    with the asymmetry doubled (the old S/L = H/L = asym convention) it differs by far more."""
    peak = _FcjPeaks(two_theta, sig, gam, shl)
    same, g2 = peak.ours(shl), peak.gsas2
    assert np.abs(same - g2).max() < 0.015 * g2.max()
    assert abs(peak.centroid(same) - peak.centroid(g2)) < 1e-3
    assert np.abs(peak.ours(2 * shl) - g2).max() > 0.3 * g2.max()


@needs_gsas
@pytest.mark.parametrize(
    ("two_theta", "sig", "gam", "shl"),
    [(10.0, 2.0, 0.3, 0.05), (30.0, 1.0, 2.0, 0.02), (45.0, 2.0, 3.0, 0.01), (120.0, 2.0, 3.0, 0.02)],
)
def test_gsas2_fcj_rule_reproduces_gsas2_peak(two_theta: float, sig: float, gam: float, shl: float) -> None:
    """With ``fcj_quadrature="gsas2"`` our asymmetric peak is GSAS-II's (pypsvfcjo) also where GSAS-II's own
    quadrature is under-resolved (few nodes: span small against γ): within 0.5 % of the height and 2e-4° in
    centroid, while the converged rule differs there by ≥ 1 % of the height."""
    peak = _FcjPeaks(two_theta, sig, gam, shl)
    same, g2 = peak.ours(shl, "gsas2"), peak.gsas2
    assert np.abs(same - g2).max() < 0.005 * g2.max()
    assert abs(peak.centroid(same) - peak.centroid(g2)) < 2e-4
    if two_theta > 20.0:
        assert np.abs(peak.ours(shl) - g2).max() > 0.01 * g2.max()


@needs_gsas
def test_bad_models_flagged_or_clear_error() -> None:
    """No reflection in range -> RefineError; two identical phases (scales exactly correlated) -> flagged
    'singular', not converged."""
    truth = rutile()
    low = simulate_pattern(truth, np.arange(5.0, 20.0, 0.02), INSTRUMENT, seed=1)
    with pytest.raises(RefineError, match="no reflections"):
        gsas.refine_gsas(low, truth)
    pat = simulate_pattern(truth, np.arange(20.0, 80.0, 0.02), INSTRUMENT, seed=1)
    r = gsas.refine_gsas(pat, [truth, truth.copy()], stages=(Stage("s", ("scale", "background")),))
    assert r.status == "singular" and not r.converged


@needs_gsas
def test_polar_origin_held_not_singular() -> None:
    """Wurtzite ZnO (P6₃mc, polar c): the backend holds one z, as our engine, so refining positions is
    regular; the Zn–O separation u is recovered."""
    zno = Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.2498, 5.2066), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.3819]]
    )
    pat = simulate_pattern(zno, GRID, INSTRUMENT, seed=4)
    r = gsas.refine_gsas(pat, perturbed(zno))
    assert r.status == "converged", r.status
    zn, o = (next(s for s in r.phases[0].sites if s.label.startswith(el)) for el in ("Zn", "O"))
    assert zn.xyz[2].esd == 0.0 and o.xyz[2].esd > 0
    assert abs((o.xyz[2].value - zn.xyz[2].value) % 1.0 - 0.3819) < 0.005


# ---------------------------------------------------------------------------------------------- real data
def _real_case(
    real_data: Path, real_manifest: Any, case: str
) -> tuple[Any, Any, Any, dict[str, Any], dict[str, Any]]:
    from conftest import instrument_as_gsas2_read, load_real_case

    pattern, structure, inst, cfg, g2 = load_real_case(real_data, real_manifest, case)
    return pattern, structure, instrument_as_gsas2_read(inst, cfg), cfg, g2


def g2_like(cfg: dict[str, Any], g2: dict[str, Any]) -> dict[str, Any]:
    """refine_gsas keywords reproducing GSAS-II's validation fit of a case (G2_validation.json): its 2θ
    range, background terms, stage recipe (:func:`gsas_recipe`: positions only where it refined them,
    sample shift only where it refined it), SH/L held, and its profile recipe (cfg "prof": crystallite size
    + microstrain, or U V W X Y with GSAS-II's default sample broadening held)."""
    lo, hi = g2["xrange"]
    shift = "+sample shift" in [s[0] for s in g2["stages"]]
    sample = cfg.get("prof") == "sample"
    return {
        "two_theta_min": lo,
        "two_theta_max": hi,
        "n_background": cfg["bkg"],
        "stages": gsas.gsas_recipe(positions=bool(cfg["xyz"]), sample_shift=shift),
        "fix": ("asym",),
        "refine_displacement": shift,
        "profile": "sample" if sample else "instrument",
        "sample_broadening": True,
    }


@needs_gsas
@pytest.mark.slow
@pytest.mark.parametrize("case", ["pbso4_xray_lab", "pbso4_neutron_d1a"])
def test_real_case_against_g2_validation(real_data: Path, real_manifest: Any, case: str) -> None:
    """The backend given GSAS-II's recipe and inputs for a case (:func:`g2_like`, SH/L as GSAS-II reads the
    instrument file) reproduces GSAS-II's validation fit: Rwp within 5 % relative, lattice within 1 esd;
    our engine with the same settings: Rwp at most 5 % (relative) above, lattice within 0.05 %."""
    pattern, structure, inst, cfg, g2 = _real_case(real_data, real_manifest, case)
    kw = g2_like(cfg, g2)
    r = gsas.refine_gsas(pattern, structure, instrument=inst, **kw)
    assert r.status == "converged", r.status
    assert abs(r.rwp * 100 - g2["final_Rwp"]) <= 0.05 * g2["final_Rwp"], (r.rwp, g2["final_Rwp"])
    cell = next(iter(g2["cells"].values()))
    for name in ("a", "b", "c"):
        v = r.phases[0].lattice[name]
        assert abs(v.value - cell[f"length_{name}"]) < v.esd, (name, v, cell[f"length_{name}"])
    opts = RefineOptions(
        two_theta_min=kw["two_theta_min"] - 1e-6,
        two_theta_max=kw["two_theta_max"] + 1e-6,
        n_background=kw["n_background"],
        strategy=tuple(
            st if cfg["xyz"] or "xyz" not in st.groups else Stage(st.name, (), st.max_iter)
            for st in DEFAULT_STRATEGY
        ),
        fix=("asym",) if kw["refine_displacement"] else ("asym", "displacement"),
        refine_displacement=kw["refine_displacement"],
    )
    ours = one_thread(refine, pattern, structure, instrument=inst, options=opts)
    print(
        f"{case}: Rwp % G2_validation {g2['final_Rwp']:.3f} backend {100 * r.rwp:.3f} ours {100 * ours.rwp:.3f}"
    )
    assert ours.rwp <= 1.05 * r.rwp, (ours.rwp, r.rwp)
    for name in ("a", "b", "c"):
        a, b = ours.phases[0].lattice[name], r.phases[0].lattice[name]
        print(
            f"  {name}: G2_validation {cell[f'length_{name}']:.5f} backend {b.value:.5f}({b.esd:.5f}) ours {a.value:.5f}({a.esd:.5f})"
        )
        assert abs(a.value - b.value) / b.value < 5e-4, (name, a, b)


def g2_no_shift(cfg: dict[str, Any], g2: dict[str, Any]) -> dict[str, Any]:
    """:func:`g2_like` with our profile model (U V W X Y refined, no sample broadening) and without the
    sample-shift stage (displacement held at 0, zero refined): GSAS-II's side of
    test_rietveld_real.test_real_case_no_shift_against_gsas2."""
    return {
        **g2_like(cfg, g2),
        "stages": gsas.gsas_recipe(positions=bool(cfg["xyz"]), sample_shift=False),
        "refine_displacement": False,
        "profile": "instrument",
        "sample_broadening": False,
    }


@needs_gsas
@pytest.mark.parametrize("case", ["fluorapatite_xray_lab", "lab6_srm660c_lab"])
def test_no_shift_constants_reproduced_by_gsas2(real_data: Path, real_manifest: Any, case: str) -> None:
    """The GSAS-II figures test_rietveld_real compares our engine with (G2_NO_SHIFT: zero refined, no sample
    shift, our profile model), recomputed live: Rwp within 0.5 % (relative), each lattice length within 1
    GSAS-II esd. About 10–15 s (fluorapatite) and 2 s (LaB6)."""
    from test_rietveld_real import G2_NO_SHIFT

    pattern, structure, inst, cfg, g2 = _real_case(real_data, real_manifest, case)
    r = gsas.refine_gsas(pattern, structure, instrument=inst, **g2_no_shift(cfg, g2))
    ref = G2_NO_SHIFT[case]
    lat = {n: r.phases[0].lattice[n] for n in ("a", "b", "c")}
    print(
        f"{case} (no shift): GSAS-II Rwp % live {100 * r.rwp:.3f} constant {ref['rwp']:.3f}; "
        + " ".join(
            f"{n} {v.value:.6f}({v.esd:.6f}) vs {ref[n][0]:.6f}({ref[n][1]:.6f})" for n, v in lat.items()
        )
    )
    assert r.status == "converged", r.status
    assert r.instrument["displacement"].value == 0.0
    assert abs(100 * r.rwp - ref["rwp"]) <= 0.005 * ref["rwp"], (r.rwp, ref["rwp"])
    for n, v in lat.items():
        assert abs(v.value - ref[n][0]) <= ref[n][1], (n, v, ref[n])


# ---------------------------------------------------------------------------------------------- CLI
def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    from pymatgen.io.cif import CifWriter

    pat = simulate_pattern(rutile(), GRID, INSTRUMENT, seed=3)
    xye = tmp_path / "rutile.xye"
    np.savetxt(xye, np.column_stack([pat.two_theta, pat.intensity, pat.sigma]), fmt="%.5f")
    cif = tmp_path / "TiO2.cif"
    CifWriter(perturbed(rutile()), symprec=0.01).write_file(cif)
    return xye, cif


def test_cli_engine_gsas_without_gsas_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xrdsolve.cli import main

    xye, cif = _write_inputs(tmp_path)
    monkeypatch.setitem(sys.modules, "GSASII", None)
    monkeypatch.setitem(sys.modules, "GSASII.GSASIIscriptable", None)
    gsas.gsas_available.cache_clear()
    try:
        code = main(
            ["refine", str(xye), str(cif), "-o", str(tmp_path / "out"), "-r", "CuKa", "--engine", "gsas"]
        )
    finally:
        gsas.gsas_available.cache_clear()
    err = capsys.readouterr().err
    assert code == 2, err
    assert "GSAS-II is not installed" in err
    assert main(["refine", str(xye), str(cif), "-o", str(tmp_path / "o2"), "--engine", "topas"]) == 2


@needs_gsas
def test_cli_engine_gsas_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xrdsolve.cli import main

    xye, cif = _write_inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["refine", str(xye), str(cif), "-o", str(out), "-r", "CuKa", "--engine", "gsas"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "gsas" and summary["converged"] and summary["gof"] < 1.2
    assert abs(summary["phases"][0]["lattice"]["a"]["value"] - 4.5937) < 0.002
    for name in ("fit.png", "fit.xye", "refined_TiO2.cif", "gsas2/xrdsolve.gpx"):
        assert (out / name).exists(), name
    assert "Rwp" in capsys.readouterr().out
