"""Symmetry-constrained parameterisation: regenerates the input structure, keeps symmetry, passes gradients."""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np
import pytest
import torch
from conftest import REAL_DATA, STRUCTURE_DATA
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xrdsolve.refine.errors import StructureError
from xrdsolve.refine.params import lattice_parameters, load_cif, parameterize, stack_parameterizations

REAL_CIFS = [
    "pbso4_xray_lab/PbSO4.cif",
    "yag_garnet_neutron_d1a/YFeAl_garnet_from_tutorial.cif",
    "fluorapatite_xray_lab/fluorapatite_from_FAP_EXP.cif",
    "lab6_srm660c_lab/LaB6_constructed.cif",
]


def _mp20(n: int) -> list[Structure]:
    text = (STRUCTURE_DATA / "mp20_subset" / "test.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))[:n]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in rows:
            s = CifParser.from_str(r["cif"]).parse_structures(primitive=False)[0]
            out.append(SpacegroupAnalyzer(s, symprec=0.01).get_refined_structure())
    return out


def _same_sites(a: Structure, b: Structure) -> bool:
    """Every site of a has a site of b at the same fractional position (mod 1) with the same species."""
    fa, fb = a.frac_coords, b.frac_coords
    for i, site in enumerate(a):
        d = fb - fa[i]
        d -= np.round(d)
        dist = np.linalg.norm(d @ a.lattice.matrix, axis=1)
        j = int(np.argmin(dist))
        if dist[j] > 1e-3 or b[j].species != site.species:
            return False
    return len(a) == len(b)


@pytest.mark.parametrize("cif", REAL_CIFS)
def test_real_cif_roundtrip(cif: str, shared_data) -> None:
    s = load_cif(REAL_DATA / cif)[0]
    p = parameterize(s)
    s2 = p.to_structure()
    assert StructureMatcher().fit(s, s2)
    assert _same_sites(s, s2)
    assert np.allclose(s.lattice.abc, s2.lattice.abc, atol=1e-6)
    assert np.allclose(s.lattice.angles, s2.lattice.angles, atol=1e-6)
    cif_labels = set(s.labels)
    assert {site.label for site in p.sites} <= cif_labels


def test_pbso4_constraints(shared_data) -> None:
    s = load_cif(REAL_DATA / "pbso4_xray_lab" / "PbSO4.cif")[0]
    p = parameterize(s)
    assert p.spacegroup_symbol == "Pnma"
    assert len(p.block("lattice")) == 3  # orthorhombic: a, b, c
    # Pnma 4c sites have x, z free (y = 1/4 fixed), 8d all three
    assert [s_.n_free_xyz for s_ in p.sites] == [2, 2, 2, 2, 3]
    assert [s_.wyckoff for s_ in p.sites] == ["4c", "4c", "4c", "4c", "8d"]
    assert np.allclose(s.site_properties["b_iso"][0], 0.01 * 8 * np.pi**2)


def test_garnet_mixed_sites_keep_total(shared_data) -> None:
    s = load_cif(REAL_DATA / "yag_garnet_neutron_d1a" / "YFeAl_garnet_from_tutorial.cif")[0]
    p = parameterize(s)
    assert len(p.block("lattice")) == 1
    occ_idx = p.block("occ")
    assert len(occ_idx) == 2
    v = torch.as_tensor(p.values).clone()
    v[occ_idx] = torch.tensor([0.3, 0.8], dtype=v.dtype)
    occ = p.occupancies(v).numpy()
    for s_i, site in enumerate(p.sites):
        if site.is_mixed:
            entries = [n for n in range(p.n_atoms) if p.atom_site[n] == s_i]
            m = site.multiplicity
            # per orbit position the species occupancies still sum to the site total 1.0
            for j in range(m):
                assert occ[entries[j::m]].sum() == pytest.approx(1.0)


def test_perturbed_positions_stay_symmetric(shared_data) -> None:
    """Moving every free parameter keeps the space group (special positions stay special)."""
    for cif in REAL_CIFS:
        s = load_cif(REAL_DATA / cif)[0]
        p = parameterize(s)
        rng = np.random.default_rng(0)
        v = p.values.copy()
        xyz = p.block("xyz")
        v[xyz] += rng.uniform(-0.01, 0.01, size=xyz.size)
        v[p.block("lattice")] *= 1.01
        s2 = p.to_structure(v)
        sga = SpacegroupAnalyzer(s2, symprec=1e-4)
        assert sga.get_space_group_number() == p.spacegroup_number, cif


def test_mp20_roundtrip_and_setting_invariance(shared_data) -> None:
    structures = _mp20(40)
    for s in structures:
        p = parameterize(s)
        s2 = p.to_structure()
        assert _same_sites(s, s2), s.formula
        assert np.allclose(s.lattice.parameters, s2.lattice.parameters, atol=1e-5)
        # origin shift: same parameter count, same structure
        shifted = s.copy()
        shifted.translate_sites(list(range(len(s))), [0.13, 0.27, 0.41], frac_coords=True, to_unit_cell=True)
        p_shift = parameterize(shifted)
        assert p_shift.n_params == p.n_params
        assert StructureMatcher().fit(shifted, p_shift.to_structure())


def test_gradients_flow_through_stack(shared_data) -> None:
    phases = [parameterize(s) for s in _mp20(5)]
    st = stack_parameterizations(phases)
    theta = st.values.clone().requires_grad_(True)
    lat = st.lattice(theta)
    pars = lattice_parameters(lat)
    frac = st.frac(theta)
    loss = pars.sum() + (frac * st.mask[..., None]).sum() + st.b_iso(theta).sum()
    loss.backward()
    assert theta.grad is not None
    assert torch.isfinite(theta.grad).all()
    # every real parameter of each candidate except occupancies has a non-zero gradient
    for i, ph in enumerate(phases):
        g = theta.grad[i, : ph.n_params]
        for k, kind in enumerate(ph.kinds):
            if kind in ("lattice", "biso"):
                assert g[k] != 0
    # the stacked maps reproduce each single-phase evaluation
    for i, ph in enumerate(phases):
        v = st.values[i, : ph.n_params]
        assert torch.allclose(st.lattice(st.values)[i], ph.lattice_matrix(v))
        assert torch.allclose(st.frac(st.values)[i, : ph.n_atoms], ph.frac(v))


def test_no_atoms_raises() -> None:
    with pytest.raises(StructureError):
        parameterize(Structure(Lattice.cubic(4.0), [], []))
