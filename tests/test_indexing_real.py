"""Indexing of real measured patterns: peaks picked with xrdsolve.conditioning.peaks, cell compared with
the GSAS-II validation fit of each case (../shared/data/real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xrdsolve.conditioning import read_pattern
from xrdsolve.conditioning.peaks import find_peaks
from xrdsolve.refine.indexing import Peaks, index_peaks
from xrdsolve.refine.indexing.extinctions import spacegroup_hints
from xrdsolve.refine.indexing.observations import drop_kalpha2


def _peaks(path: Path, radiation: str) -> Peaks:
    pattern = read_pattern(path, radiation=radiation)
    assert pattern.radiation is not None
    pk = find_peaks(pattern, max_peaks=40)
    tt, height = np.asarray(pk.two_theta), np.asarray(pk.height)
    wl = list(pattern.radiation.wavelengths)
    if len(wl) > 1:
        keep = drop_kalpha2(tt, height, wl[0], wl[1])
        tt, height = tt[keep], height[keep]
    return Peaks.from_two_theta(tt, float(wl[0]), height)


def _reference(manifest: list, case: str) -> dict:
    entry = next(c for c in manifest if c["case"] == case)
    return next(iter(entry["val"]["G2_validation.json"]["cells"].values()))


@pytest.mark.parametrize(
    ("case", "radiation", "system", "centring", "spacegroup"),
    [
        ("pbso4_xray_lab", "CuKa", "orthorhombic", "P", 62),
        ("fluorapatite_xray_lab", "CuKa", "hexagonal", "P", 176),
        pytest.param(
            "ceo2_synchrotron_qspace", "0.1", "cubic", "F", 225, marks=pytest.mark.slow
        ),  # ~10 s CPU: the lower-symmetry searches are slow at λ = 0.1 Å
    ],
)
def test_real_pattern_indexes_to_reference_cell(
    real_data: Path,
    real_manifest: list,
    case: str,
    radiation: str,
    system: str,
    centring: str,
    spacegroup: int,
) -> None:
    entry = next(c for c in real_manifest if c["case"] == case)
    peaks = _peaks(real_data / case / entry["cfg"]["pattern"], radiation)
    best = index_peaks(peaks)[0]
    ref = _reference(real_manifest, case)
    assert (best.crystal_system, best.centring) == (system, centring)
    got = sorted(best.abc)
    want = sorted([ref["length_a"], ref["length_b"], ref["length_c"]])
    np.testing.assert_allclose(got, want, rtol=3e-3)
    assert best.volume == pytest.approx(ref["volume"], rel=5e-3)
    assert best.m20 > 20 and best.n_unindexed == 0
    hints = spacegroup_hints(best, peaks)
    assert spacegroup in [h.number for h in hints[:2]]
