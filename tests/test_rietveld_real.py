"""Real patterns vs GSAS-II (G2_validation.json beside each case), like for like: the same 2θ range, background
term count, atom recipe (positions only where GSAS-II refined them), sample shift only where GSAS-II refined
it, and the axial-divergence asymmetry SH/L held at the value GSAS-II used (the instrument file's, or GSAS-II's
default 0.002 for GSAS-I .prm files, whose S/L and H/L its importer drops). Slow: about 1–3 min CPU per case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
            reason="known difference: at a lower Rwp (9.15 vs 9.41 %) our cell is 0.08 % below GSAS-II's "
            "(zero −0.3°, displacement −0.5 mm vs GSAS-II's ≈ 0 along the zero/shift/cell valley)",
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


def run_case(real_data: Path, real_manifest: Any, case: str) -> tuple[Any, dict[str, Any]]:
    pattern, structure, inst, cfg, g2 = load_real_case(real_data, real_manifest, case)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = refine(
            pattern,
            [structure],
            instrument=instrument_as_gsas2_read(inst, cfg),
            options=gsas_like_options(cfg, g2),
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
