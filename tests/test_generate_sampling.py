"""Sampler clean-up and the generator CLI surface."""

from __future__ import annotations

import numpy as np
import torch
from conftest import REPO_ROOT
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


# -- space-group-aware sampling (Wyckoff templates) -------------------------------------------------------
def _templates():
    from xrdsolve.generate.symmetric import WyckoffTemplate

    return [
        WyckoffTemplate(136, (("Ti", "2a"), ("O", "4f")), (4.59, 4.59, 2.96, 90, 90, 90)),
        WyckoffTemplate(225, (("Na", "4a"), ("Cl", "4b")), (5.64, 5.64, 5.64, 90, 90, 90)),
        WyckoffTemplate(
            62, (("Ca", "4c"), ("Ti", "4b"), ("O", "4c"), ("O", "8d")), (5.4, 7.6, 5.4, 90, 90, 90)
        ),
        WyckoffTemplate(166, (("Bi", "6c"), ("Se", "3a"), ("Se", "6c")), (4.14, 4.14, 28.6, 90, 90, 120)),
    ]


def test_symmetry_projector_puts_any_coordinates_on_the_template() -> None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from xrdsolve.generate.diffusion import CrystalTensors
    from xrdsolve.generate.symmetric import SymmetryProjector, merge_orbit_images

    templates = _templates()
    proj, species, mask, lattices = SymmetryProjector.from_templates(templates, dtype=torch.float64)
    assert mask.sum(1).tolist() == [6, 8, 20, 15]  # padded to the largest orbit set
    g = torch.Generator().manual_seed(0)
    x = torch.rand(*mask.shape, 3, generator=g, dtype=torch.float64)
    y = proj(x)
    assert not torch.allclose(x * mask[..., None], y)  # random coordinates are not on the sites
    again = proj(y)
    assert float(((again - y + 0.5) % 1.0 - 0.5).abs().max()) < 1e-9  # a projection
    structures = merge_orbit_images(CrystalTensors(species, y, lattices, mask).to_structures())
    for s, t in zip(structures, templates, strict=True):
        assert SpacegroupAnalyzer(s, symprec=1e-3).get_space_group_number() == t.spacegroup
    # a small displacement of a symmetric structure is projected back close to it
    noise = 0.01 * torch.randn(y.shape, generator=g, dtype=torch.float64) * mask[..., None]
    back = proj(y + noise)
    assert float(((back - y + 0.5) % 1.0 - 0.5).abs().max()) < 0.01


def test_wyckoff_templates_walk_the_plan_and_reject_impossible_contents() -> None:
    from pymatgen.core import Composition

    from xrdsolve.generate.symmetric import templates_for

    cell = (4.59, 4.59, 2.96, 90.0, 90.0, 90.0)
    ts = templates_for(Composition("TiO2"), 2, [136], cell, 5)
    assert len(ts) == 5 and all(t.spacegroup == 136 for t in ts)
    assert all(sorted(sym for sym, _ in t.sites).count("Ti") >= 1 for t in ts)
    assert {t.sites for t in ts} >= {(("Ti", "2a"), ("O", "4f"))}  # rutile's assignment is walked
    assert templates_for(Composition("TiO2"), 1, [225], (4.0, 4.0, 4.0, 90, 90, 90), 3) == []


def test_pattern_scores_rank_the_true_structure_above_many_peaked_decoys() -> None:
    """The benchmark's ranking on its own kind of pattern (randomised instrument, counting noise,
    background): rutile beats anatase and P1 decoys with many weak peaks in each of six patterns, by at
    least 0.05 in cosine (0.085 in the closest of these six); with √ intensities compared (noise floor
    included) decoys won two of six such patterns."""
    from xrdsolve.conditioning.preprocess import QGrid
    from xrdsolve.generate.bench import pattern_scores, simulate_patterns

    examples = REPO_ROOT / "data" / "examples"
    rutile = Structure.from_file(examples / "rutile_TiO2.cif")
    anatase = Structure.from_file(examples / "anatase_TiO2.cif")
    rng = np.random.default_rng(0)
    decoys = [
        Structure(Lattice.from_parameters(*(rng.uniform(4.0, 6.5, 3)), 90, 90, 90), ["Ti"] * 2 + ["O"] * 4,
                  rng.random((6, 3)))
        for _ in range(12)
    ]  # fmt: skip
    for pattern in simulate_patterns([rutile] * 6, seed=3):
        scores = pattern_scores(pattern, [anatase, *decoys, rutile], QGrid(0.3, 6.0, 2048))
        assert int(np.argmax(scores)) == len(scores) - 1
        assert scores[-1] - np.sort(scores)[-2] > 0.05


def test_baseline_draws_are_time_limited() -> None:
    """A pyxtal draw that hangs (Sm8Sb3O8 of the validation split ran for hours) is interrupted."""
    import time

    import pytest

    from xrdsolve.generate.bench import _DrawTimeout, _time_limit

    t0 = time.perf_counter()
    with pytest.raises(_DrawTimeout), _time_limit(0.2):
        time.sleep(5)
    assert time.perf_counter() - t0 < 2
    with _time_limit(5):  # a block that finishes in time is not disturbed, and the alarm is cleared
        time.sleep(0.01)
    time.sleep(0.05)
