"""Issue 8 acceptance on randomised synthetic patterns (noise, background, zero shift, displacement, profile).

* LiNiO2 with 3–7 % Li/Ni anti-sites (Cu Kα): refined anti-site fraction within 0.03 and truth within 3 esd
  in ≥ 90 % of 50 trials.
* (Fe0.5Mn0.5)3O4 spinel with a random cation distribution, both sites mixed: on *neutrons* (b_Fe = 9.45 fm,
  b_Mn = −3.73 fm). Fe and Mn differ by one electron, and on Cu Kα a single pattern gives esds of 0.06–0.07 per site
  (0.03–0.04 with a composition restraint) — not identifiable to 0.03, which ``test_fe_mn_cu_ka_is_not_identifiable``
  records instead of claiming otherwise.
* La0.5NbO3: a vacancy-ordered 1×1×2 supercell pattern is called ordered with multiplicity 2, the disordered
  average is called disordered, ≥ 90 % correct over 40 trials (20 + 20).

Run the slow ones with ``pytest -m slow tests/test_disorder_acceptance.py``; ``python tests/disorder_trials.py
linio2|spinel|order N`` prints the measured fractions.
"""

from __future__ import annotations

import numpy as np
import pytest
from disorder_trials import run_linio2, run_order_trials, run_spinel, spinel

N_OCC_TRIALS = 50
N_ORDER_TRIALS = 20  # per class


def test_linio2_antisite_two_trials() -> None:
    out = run_linio2(2, seed=5, two_theta_max=90.0)
    assert out.within_tol.all() and out.within_3esd.all(), out.summary()


@pytest.mark.slow
def test_spinel_neutron_few_trials() -> None:
    out = run_spinel(2, seed=11, two_theta_max=110.0)
    assert out.within_tol.all() and out.within_3esd.all(), out.summary()


@pytest.mark.slow
def test_linio2_antisite_50_trials() -> None:
    out = run_linio2(N_OCC_TRIALS)
    s = out.summary()
    assert s["frac_within_0.03"] >= 0.9, s
    assert s["frac_truth_within_3esd"] >= 0.9, s


@pytest.mark.slow
def test_spinel_neutron_50_trials() -> None:
    out = run_spinel(N_OCC_TRIALS)
    s = out.summary()
    assert s["frac_within_0.03"] >= 0.9, s
    assert s["frac_truth_within_3esd"] >= 0.9, s


@pytest.mark.slow
def test_fe_mn_cu_ka_is_not_identifiable() -> None:
    """Cu Kα, noise-free apart from Poisson counts: the Fe/Mn esd per site exceeds the 0.03 target."""
    from xrdsolve.refine.bench import simulate_pattern
    from xrdsolve.refine.rietveld import RefineOptions, refine

    pat = simulate_pattern(spinel(0.5, 0.5), np.arange(15.0, 120.0, 0.02), seed=1)
    r = refine(
        pat,
        spinel(1.0, 1.0),
        mix={"A1": ["Fe", "Mn"], "B1": ["Fe", "Mn"]},
        options=RefineOptions(n_background=4),
    )
    esds = [site.occupancy["Fe"].esd for site in r.phases[0].sites if site.label in ("A1", "B1")]
    assert min(esds) > 0.03, esds


@pytest.mark.slow
def test_order_disorder_40_trials() -> None:
    right = 0
    for ordered in (True, False):
        for d in run_order_trials(N_ORDER_TRIALS, ordered):
            right += d.ordered == ordered and (
                not ordered or (d.best is not None and d.best.multiplicity == 2)
            )
    assert right / (2 * N_ORDER_TRIALS) >= 0.9, right
