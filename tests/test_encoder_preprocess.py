"""Q-grid preprocessing and the pattern / composition encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrdsolve.conditioning.encoder import CompositionEncoder, PatternEncoder
from xrdsolve.conditioning.pattern import Pattern
from xrdsolve.conditioning.preprocess import QGrid, encode_arrays, preprocess, resample


def test_resample_keeps_peak_position_and_coverage() -> None:
    grid = QGrid(0.3, 6.0, 1024)
    q = np.linspace(1.0, 4.0, 5000)
    y = np.exp(-0.5 * ((q - 2.0) / 0.01) ** 2)
    out, cov = resample(q, y, grid)
    assert abs(grid.q[np.argmax(out)] - 2.0) < 0.006
    assert cov[grid.q < 1.0].sum() == 0 and cov[(grid.q > 1.01) & (grid.q < 3.99)].all()
    assert out[grid.q > 4.01].sum() == 0


def test_preprocess_removes_background_and_normalises() -> None:
    tt = np.linspace(5, 90, 4000)
    lam = 1.540593
    q = 4 * np.pi * np.sin(np.deg2rad(tt / 2)) / lam
    y = 500 + 2 * tt + 1000 * np.exp(-0.5 * ((q - 2.5) / 0.01) ** 2)
    pat = Pattern.from_arrays(tt, y, radiation="CuKa1")
    enc = preprocess(pat, QGrid())
    assert enc.shape == (2, 2048) and enc.dtype == np.float32
    assert enc[0].max() == 1.0
    far = np.abs(QGrid().q - 2.5) > 0.2
    assert np.median(enc[0][far & (enc[1] > 0)]) < 0.1  # background mostly gone


def test_same_peaks_at_any_wavelength() -> None:
    d = np.array([3.0, 2.1, 1.5])
    grid = QGrid()
    encs = []
    for lam in (1.5406, 0.7093, 0.45):
        tt = np.linspace(2, np.rad2deg(2 * np.arcsin(min(0.99, 6.0 * lam / (4 * np.pi)))), 5000)
        q = 4 * np.pi * np.sin(np.deg2rad(tt / 2)) / lam
        y = sum(np.exp(-0.5 * ((q - 2 * np.pi / di) / 0.01) ** 2) for di in d)
        encs.append(encode_arrays(q, y, grid)[0])
    assert np.corrcoef(encs[0], encs[1])[0, 1] > 0.9
    assert np.corrcoef(encs[0], encs[2])[0, 1] > 0.9


def test_encoders_shapes_and_composition_features() -> None:
    enc = PatternEncoder(n_points=512, dim=32)
    assert enc(torch.zeros(3, 2, 512)).shape == (3, 32)
    species = torch.tensor([[8, 26, 8, 0], [26, 8, 8, 0]])
    mask = species > 0
    f = CompositionEncoder.featurise(species, mask)
    assert torch.allclose(f[0], f[1])  # permutation invariant
    assert float(f[0, :-1].sum()) == pytest.approx(1.0) and float(f[0, 8]) == pytest.approx(2 / 3)
    assert CompositionEncoder(16)(species, mask).shape == (2, 16)
