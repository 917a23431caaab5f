"""Generator building blocks: wrapped-normal score, lattice parameterisation, invariances of the loss,
sampling API, weights round trip and a tiny overfit test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.spatial.transform import Rotation

from xrdsolve.generate import wrapped_normal as wn
from xrdsolve.generate.config import GeneratorConfig
from xrdsolve.generate.denoiser import DenoiserConfig
from xrdsolve.generate.diffusion import CrystalTensors, DiffusionConfig, Schedule, diffusion_loss
from xrdsolve.generate.lattice import lattice_to_params, metric, params_to_lattice
from xrdsolve.generate.model import GeneratorModel


# -- wrapped normal ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3, 0.7])
def test_wrapped_normal_score_matches_numeric_derivative(sigma: float) -> None:
    x = torch.linspace(-1.3, 1.3, 41, dtype=torch.float64)
    s = torch.full_like(x, sigma)
    h = 1e-6
    numeric = (wn.log_prob(x + h, s) - wn.log_prob(x - h, s)) / (2 * h)
    assert torch.allclose(wn.score(x, s), numeric, atol=1e-4 * max(1.0, 1 / sigma**2))


def test_wrapped_normal_score_is_periodic_and_gaussian_for_small_sigma() -> None:
    x = torch.tensor([0.01, 0.2, -0.3], dtype=torch.float64)
    assert torch.allclose(wn.score(x + 1.0, torch.tensor(0.2)), wn.score(x, torch.tensor(0.2)))
    assert torch.allclose(wn.score(x * 0.1, torch.tensor(0.05)), -(x * 0.1) / 0.05**2)


def test_score_second_moment_limits() -> None:
    m = wn.score_second_moment(torch.tensor([0.01, 1.0], dtype=torch.float64))
    assert m[0] == pytest.approx(1 / 0.01**2, rel=1e-3)  # Gaussian limit
    assert float(m[1]) < 1e-6  # uniform limit: score → 0


# -- lattice ----------------------------------------------------------------------------------------
def _lattices() -> torch.Tensor:
    params = [
        (4.0, 5.0, 6.0, 80.0, 95.0, 110.0),
        (3.0, 3.0, 9.0, 90.0, 90.0, 120.0),
        (5.5, 5.5, 5.5, 60, 60, 60),
    ]
    return torch.tensor(np.stack([Lattice.from_parameters(*p).matrix for p in params]))


def test_lattice_params_round_trip_preserves_metric() -> None:
    lat = _lattices()
    n = torch.tensor([4, 7, 2])
    back = params_to_lattice(lattice_to_params(lat, n), n)
    assert torch.allclose(metric(back), metric(lat), atol=1e-9)


def test_lattice_params_are_rotation_invariant_and_any_vector_is_valid() -> None:
    lat = _lattices()
    rot = torch.tensor(Rotation.random(3, random_state=1).as_matrix())
    rotated = lat @ rot.transpose(-1, -2)
    assert torch.allclose(lattice_to_params(rotated), lattice_to_params(lat), atol=1e-9)
    v = torch.randn(100, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    det = torch.linalg.det(params_to_lattice(v))
    assert bool((det > 0).all())


# -- invariances of the loss ---------------------------------------------------------------------------
def _small_model(seed: int = 0) -> tuple[GeneratorModel, Schedule]:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(denoiser=DenoiserConfig(hidden=32, layers=2))
    cfg.encoder.n_points = 256
    cfg.encoder.pattern_dim = 32
    cfg.encoder.composition_dim = 16
    model = GeneratorModel(cfg).double()
    return model, Schedule(DiffusionConfig())


def _structure() -> Structure:
    return Structure(
        Lattice.from_parameters(4.1, 5.2, 6.3, 85, 95, 100),
        ["Ti", "O", "O", "Sr", "O"],
        [[0.1, 0.2, 0.3], [0.5, 0.1, 0.9], [0.7, 0.6, 0.2], [0.3, 0.8, 0.5], [0.95, 0.45, 0.65]],
    )


def _loss(model: GeneratorModel, sch: Schedule, batch: CrystalTensors, noise_x: torch.Tensor) -> float:
    t = torch.tensor([0.05, 0.3, 0.8], dtype=torch.float64)
    noise_l = torch.linspace(-1, 1, 18, dtype=torch.float64).reshape(3, 6)
    cond = model.condition(None, batch.species, batch.mask).double()
    loss, _ = diffusion_loss(model, sch, batch, cond, t=t, noise=(noise_l, noise_x))
    return float(loss)


def _batch(s: Structure) -> CrystalTensors:
    return CrystalTensors.from_structures([s, s, s], dtype=torch.float64)


def test_loss_invariant_to_permutation_origin_shift_and_rotation() -> None:
    model, sch = _small_model()
    s = _structure()
    noise = torch.randn(3, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = _loss(model, sch, _batch(s), noise)

    perm = [3, 0, 4, 1, 2]
    sp = Structure(s.lattice, [s[i].specie for i in perm], [s[i].frac_coords for i in perm])
    assert _loss(model, sch, _batch(sp), noise[:, perm]) == pytest.approx(ref, rel=1e-9)

    shifted = Structure(s.lattice, s.species, (s.frac_coords + np.array([0.37, -0.21, 0.55])) % 1.0)
    assert _loss(model, sch, _batch(shifted), noise) == pytest.approx(ref, rel=1e-10)

    rot = Rotation.random(random_state=5).as_matrix()
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    assert _loss(model, sch, _batch(rotated), noise) == pytest.approx(ref, rel=1e-10)

    # and the loss does depend on the structure (the test could fail)
    delta = np.zeros((5, 3))
    delta[0, 0] = 0.2
    moved = Structure(s.lattice, s.species, (s.frac_coords + delta) % 1)
    assert abs(_loss(model, sch, _batch(moved), noise) - ref) > 1e-7


# -- tiny overfit ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_overfit_recovers_training_structure() -> None:
    from xrdsolve.generate.metrics import match_rate
    from xrdsolve.generate.sampler import SamplerSettings, reverse_process

    torch.manual_seed(0)
    cfg = GeneratorConfig(denoiser=DenoiserConfig(hidden=48, layers=2))
    cfg.encoder.n_points = 256
    cfg.encoder.pattern_dim = 16
    cfg.encoder.composition_dim = 16
    target = Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    n = torch.tensor([2])
    p = lattice_to_params(torch.tensor(target.lattice.matrix)[None], n)
    cfg.diffusion.lat_mean = tuple(float(x) for x in p[0])
    cfg.diffusion.lat_std = (0.1,) * 6
    model = GeneratorModel(cfg)
    sch = Schedule(cfg.diffusion)
    batch = CrystalTensors.from_structures([target] * 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = last = 0.0
    for step in range(250):
        cond = model.condition(None, batch.species, batch.mask)
        loss, _ = diffusion_loss(model, sch, batch, cond, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss) if step == 0 else first
        last = 0.9 * last + 0.1 * float(loss) if step > 0 else float(loss)
    assert last < 0.6 * first
    model.eval()
    b = batch.index(torch.arange(8))
    out = reverse_process(
        model, sch, b.species, b.mask, model.condition(None, b.species, b.mask),
        settings=SamplerSettings(steps=60), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    rate, _ = match_rate([target], [out.to_structures()])
    assert rate == 1.0


# -- weights + sample API -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory):
    from xrdsolve.generate.weights import save_weights

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    cfg = GeneratorConfig(denoiser=DenoiserConfig(hidden=32, layers=2))
    save_weights(d, GeneratorModel(cfg), cfg, {"steps": 0, "note": "untrained, for tests"})
    return d


def test_weights_round_trip(tiny_weights) -> None:
    from xrdsolve.generate.weights import WeightsError, load_weights

    model, cfg, meta = load_weights(tiny_weights)
    assert cfg.denoiser.hidden == 32 and meta["steps"] == 0
    assert not any(p.requires_grad and torch.isnan(p).any() for p in model.parameters())
    with pytest.raises(WeightsError):
        load_weights(tiny_weights / "missing")


def test_sample_returns_requested_composition_and_is_seeded(tiny_weights) -> None:
    from xrdsolve.conditioning.pattern import Pattern
    from xrdsolve.generate.sampler import sample

    tt = np.linspace(5, 90, 2000)
    y = 10 + 1000 * np.exp(-0.5 * ((tt - 30) / 0.1) ** 2)
    pat = Pattern.from_arrays(tt, y, radiation="CuKa")
    a = sample(pat, "Sr2Ti2O6", n=3, seed=4, steps=5, weights=tiny_weights)
    b = sample(pat, "Sr2Ti2O6", n=3, seed=4, steps=5, weights=tiny_weights)
    assert len(a) == 3
    assert all(s.composition.formula == "Sr2 Ti2 O6" for s in a)
    assert all(
        np.allclose(x.frac_coords, y.frac_coords) and np.allclose(x.lattice.matrix, y.lattice.matrix)
        for x, y in zip(a, b, strict=True)
    )
    cell = Lattice.from_parameters(5.0, 5.0, 7.0, 90, 90, 90)
    c = sample(pat, "Sr2Ti2O6", n=2, seed=1, steps=5, weights=tiny_weights, lattice=cell)
    assert all(np.allclose(s.lattice.abc, cell.abc, atol=1e-4) for s in c)


def test_composition_errors() -> None:
    from xrdsolve.errors import UsageError
    from xrdsolve.generate.sampler import composition_species

    assert composition_species("Fe4O6") == [8] * 6 + [26] * 4
    with pytest.raises(UsageError):
        composition_species("Fe0.5O")
    with pytest.raises(UsageError):
        composition_species("Fe40O60")


def test_config_toml_round_trip(tmp_path) -> None:
    from xrdsolve.errors import UsageError

    p = tmp_path / "c.toml"
    p.write_text("[train]\nsteps = 7\n[denoiser]\nhidden = 40\n")
    cfg = GeneratorConfig.load(p)
    assert cfg.train.steps == 7 and cfg.denoiser.hidden == 40
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    p.write_text("[train]\nstepz = 7\n")
    with pytest.raises(UsageError, match="stepz"):
        GeneratorConfig.load(p)


def test_time_schedules_are_monotone() -> None:
    sch = Schedule(DiffusionConfig())
    t = torch.linspace(0.001, 1, 50, dtype=torch.float64)
    assert bool((sch.alpha_bar(t).diff() < 0).all())
    assert bool((sch.sigma(t).diff() > 0).all())
    assert float(sch.sigma(torch.tensor(1.0))) == pytest.approx(0.5)
    assert math.isclose(float(sch.score_norm(torch.tensor(0.005))), 200.0, rel_tol=1e-3)


def test_sample_in_the_cell_indexed_from_the_pattern(tiny_weights) -> None:
    from xrdsolve.conditioning.io import read_pattern
    from xrdsolve.errors import UsageError
    from xrdsolve.generate.cells import indexed_cells
    from xrdsolve.generate.sampler import sample

    pat = read_pattern(REPO_ROOT / "data" / "examples" / "demo_pattern.xye")
    cells, tried = indexed_cells(pat, "TiO2", time_limit=5.0)
    assert cells and tried["peaks"]["found"] >= 8
    rutile = cells[0]
    assert rutile.crystal_system == "tetragonal" and rutile.z == 2
    assert np.allclose(sorted(rutile.parameters[:3]), [2.9587, 4.5937, 4.5937], atol=0.01)
    assert 136 in rutile.spacegroups  # P4_2/mnm is among the extinction-compatible groups
    # default: space-group-aware, on the Wyckoff sites of the hinted groups; spacegroups=[]: no symmetry
    on_sites = sample(pat, "TiO2", n=3, seed=0, steps=4, weights=tiny_weights, lattice="index")
    free = sample(pat, "TiO2", n=3, seed=0, steps=4, weights=tiny_weights, lattice="index", spacegroups=[])
    for out in (on_sites, free):
        assert all(s.composition.formula == "Ti2 O4" for s in out)
        assert all(np.allclose(s.lattice.abc, rutile.parameters[:3], atol=1e-4) for s in out)
    n_ops = [len(SpacegroupAnalyzer(s, symprec=1e-3).get_space_group_operations()) for s in on_sites]
    assert min(n_ops) >= 8 and max(n_ops) >= 16  # tetragonal groups with P4_2/mnm's order walked first
    assert min(len(SpacegroupAnalyzer(s, symprec=1e-3).get_space_group_operations()) for s in free) <= 2
    with pytest.raises(UsageError, match="lattice"):
        sample(pat, "TiO2", n=1, steps=2, weights=tiny_weights, lattice="indexed")
    with pytest.raises(UsageError, match="pattern"):
        sample(None, "TiO2", n=1, steps=2, weights=tiny_weights, lattice="index")


def test_physics_guidance_sees_the_given_cell(tiny_weights) -> None:
    """In lattice-given mode the guidance hook compares patterns in the given cell, not the model's x̂₀."""
    from xrdsolve.generate.sampler import sample

    cell = Lattice.from_parameters(5.0, 6.0, 7.0, 90, 100, 90)
    seen: list[torch.Tensor] = []

    def hook(species, mask, frac, lat, decode, t):  # type: ignore[no-untyped-def]
        seen.append(decode(lat).detach())
        return torch.zeros_like(frac), torch.ones_like(lat)  # a lattice nudge that must be ignored

    out = sample(None, "Sr2Ti2O6", n=2, seed=0, steps=3, weights=tiny_weights, lattice=cell, guidance=hook)
    assert len(seen) == 3
    g = torch.tensor(cell.matrix @ cell.matrix.T)  # the metric: the pattern depends on nothing else
    assert all(torch.allclose((m @ m.T).double(), g, rtol=1e-4) for s in seen for m in s)
    assert all(np.allclose(s.lattice.matrix, cell.matrix, atol=1e-4) for s in out)
