"""Sampler clean-up and the generator CLI surface."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from xrdsolve.cli import main
from xrdsolve.generate.sampler import separate_atoms


def _min_dist(frac: torch.Tensor, lat: np.ndarray) -> float:
    s = Structure(Lattice(lat), ["O"] * frac.shape[0], frac.numpy())
    d = s.distance_matrix + np.eye(len(s)) * 99
    return float(d.min())


def test_separate_atoms_removes_overlaps_and_keeps_good_atoms() -> None:
    g = torch.Generator().manual_seed(0)
    lat = Lattice.from_parameters(5, 6, 7, 80, 90, 100).matrix
    frac = torch.rand(30, 20, 3, generator=g)
    mask = torch.ones(30, 20, dtype=torch.bool)
    lt = torch.tensor(lat, dtype=torch.float32)[None].expand(30, -1, -1)
    before = [_min_dist(f, lat) for f in frac]
    assert min(before) < 0.5  # the test could fail
    out = separate_atoms(frac, lt, mask, 0.9)
    after = [_min_dist(f, lat) for f in out]
    assert min(after) > 0.85
    # a structure without overlaps is untouched
    ok = int(np.argmax(before))
    if before[ok] >= 0.9:
        assert torch.allclose(out[ok], frac[ok])


def test_cli_lists_generator_commands(capsys) -> None:
    assert main(["train", "--help"]) == 0
    assert "--config" in capsys.readouterr().out
    assert main(["bench", "generate", "--help"]) == 0
    assert "--k" in capsys.readouterr().out
    assert main(["generate", "--help"]) == 0
    assert "--composition" in capsys.readouterr().out
