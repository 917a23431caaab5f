"""Real patterns vs GSAS-II (G2_validation.json beside each case), like for like: the same 2θ range, background
term count, atom recipe (positions only where GSAS-II refined them), sample shift only where GSAS-II refined
it, and the axial-divergence asymmetry SH/L held at the value GSAS-II used (the instrument file's, or GSAS-II's
default 0.002 for GSAS-I .prm files, whose S/L and H/L its importer drops). Slow: about 1–3 min CPU per case.
Fluorapatite and LaB6 also with zero refined and no sample shift against GSAS-II 2.0 run in that setting
(:data:`G2_NO_SHIFT`), where the stored fits' zero/shift/cell valley does not arise."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import instrument_as_gsas2_read, load_real_case

from xrdsolve.refine.rietveld import DEFAULT_STRATEGY, RefineOptions, Stage, refine

#: Rwp may be lower than GSAS-II's, not more than 5 % (relative) higher; lattice within 0.05 % of its values
CASES = (
    "pbso4_xray_lab",
    "pbso4_neutron_d1a",
    pytest.param(
        "fluorapatite_xray_lab",
        marks=pytest.mark.xfail(
            strict=True,
            reason="stored GSAS-II point is where its optimiser stopped in the flat zero/shift/cell valley: "
            "its own Rwp falls from 9.41 to 9.20 % as zero is held at −0.3°, where its a is 9.36386 vs ours "
            "9.36424(49) (like for like without shift: test_real_case_no_shift_against_gsas2)",
        ),
    ),
    "lab6_srm660c_lab",
    "yag_garnet_neutron_d1a",
)


def gsas_like_options(cfg: dict[str, Any], g2: dict[str, Any]) -> RefineOptions:
    """Our refinement set up as GSAS-II's validation run of the same case (SH/L held)."""
    lo, hi = g2["xrange"]
    strategy = tuple(
        s if cfg["xyz"] or "xyz" not in s.groups else Stage(s.name, (), s.max_iter) for s in DEFAULT_STRATEGY
    )
    shift = "+sample shift" in [s[0] for s in g2["stages"]]
    return RefineOptions(
        two_theta_min=lo - 1e-6,
        two_theta_max=hi + 1e-6,
        n_background=cfg["bkg"],
        strategy=strategy,
        fix=("asym",) if shift else ("asym", "displacement"),
        refine_displacement=shift,
    )


def no_shift_options(cfg: dict[str, Any], g2: dict[str, Any]) -> RefineOptions:
    """:func:`gsas_like_options` with the sample displacement held at 0 (zero still refined)."""
    return dataclasses.replace(
        gsas_like_options(cfg, g2), fix=("asym", "displacement"), refine_displacement=False
    )


def run_case(
    real_data: Path,
    real_manifest: Any,
    case: str,
    options: Callable[[dict[str, Any], dict[str, Any]], RefineOptions] = gsas_like_options,
) -> tuple[Any, dict[str, Any]]:
    pattern, structure, inst, cfg, g2 = load_real_case(real_data, real_manifest, case)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = refine(
            pattern,
            [structure],
            instrument=instrument_as_gsas2_read(inst, cfg),
            options=options(cfg, g2),
        )
    finally:
        torch.set_num_threads(threads)
    return result, g2


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_real_case_against_gsas2(real_data: Path, real_manifest: Any, case: str) -> None:
    result, g2 = run_case(real_data, real_manifest, case)
    cell = next(iter(g2["cells"].values()))
    lat = {n: result.phases[0].lattice[n] for n in ("a", "b", "c")}
    dev = max(abs(v.value - cell[f"length_{n}"]) / v.esd for n, v in lat.items() if v.esd > 0)
    print(
        f"{case}: Rwp % ours {100 * result.rwp:.3f} GSAS-II {g2['final_Rwp']:.3f}; "
        + " ".join(f"{n} {v.value:.5f}({v.esd:.5f}) vs {cell[f'length_{n}']:.5f}" for n, v in lat.items())
        + f"; max deviation {dev:.2f} esd"
    )
    assert result.status in ("converged", "max_iter"), result.status
    assert result.rwp * 100 <= 1.05 * g2["final_Rwp"], (result.rwp, g2["final_Rwp"])
    for name in ("a", "b", "c"):
        ours = result.phases[0].lattice[name].value
        assert abs(ours - cell[f"length_{name}"]) / cell[f"length_{name}"] < 5e-4, (name, ours, cell)


#: GSAS-II 2.0 (git 013259a) on the same data, like for like with :func:`no_shift_options`: run locally on
#: 2026-11-27 through our backend (xrdsolve.refine.gsas.refine_gsas) with the staged recipe of the case's
#: G2_validation.json fit (scale + background, + zero, + cell, + profile, + atoms; 10 cycles each) minus its
#: sample-shift stage (displacement held at 0, zero refined), the same 2θ range, background terms and SH/L,
#: and our profile model (U V W X Y refined, GSAS-II's crystallite-size / microstrain broadening switched off).
#: Rwp in %; lattice lengths (value, esd) in Å. Recomputed live by test_gsas_backend.py
#: (test_no_shift_constants_reproduced_by_gsas2) where GSAS-II is installed.
G2_NO_SHIFT: dict[str, dict[str, Any]] = {
    "fluorapatite_xray_lab": {
        "rwp": 9.350,
        "a": (9.370526, 0.000141),
        "b": (9.370526, 0.000141),
        "c": (6.884915, 0.000036),
    },
    "lab6_srm660c_lab": {
        "rwp": 8.273,
        "a": (4.155237, 0.000015),
        "b": (4.155237, 0.000015),
        "c": (4.155237, 0.000015),
    },
}


@pytest.mark.parametrize("case", ["fluorapatite_xray_lab", "lab6_srm660c_lab"])  # ≈ 20–35 s and 2–4 s
def test_real_case_no_shift_against_gsas2(real_data: Path, real_manifest: Any, case: str) -> None:
    """Both engines like for like with zero refined and no sample shift (the zero/shift/cell valley that
    separates the stored fits removed): Rwp within 5 % (relative) of GSAS-II's, each lattice length within
    3 combined esd of GSAS-II's (:data:`G2_NO_SHIFT`)."""
    result, _ = run_case(real_data, real_manifest, case, no_shift_options)
    ref = G2_NO_SHIFT[case]
    lat = {n: result.phases[0].lattice[n] for n in ("a", "b", "c")}
    dev = {n: (v.value - ref[n][0]) / float(np.hypot(v.esd, ref[n][1])) for n, v in lat.items()}
    print(
        f"{case} (no shift): Rwp % ours {100 * result.rwp:.3f} GSAS-II {ref['rwp']:.3f}; "
        + " ".join(
            f"{n} {v.value:.6f}({v.esd:.6f}) vs {ref[n][0]:.6f}({ref[n][1]:.6f}) {dev[n]:+.2f} esd"
            for n, v in lat.items()
        )
        + f"; zero {result.instrument['zero'].value:+.4f}°"
    )
    assert result.status in ("converged", "max_iter"), result.status
    assert result.instrument["displacement"].value == 0.0
    assert abs(100 * result.rwp - ref["rwp"]) <= 0.05 * ref["rwp"], (result.rwp, ref["rwp"])
    for n, d in dev.items():
        assert abs(d) < 3, (n, lat[n], ref[n])
