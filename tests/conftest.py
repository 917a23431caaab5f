"""Shared fixtures: the location of ../shared/data (present in CI beside the checkout)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XRDSOLVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
REAL_DATA = SHARED_DATA / "real"
STRUCTURE_DATA = SHARED_DATA / "structures"
#: pymatgen's names of the seven crystal systems (SpacegroupAnalyzer.get_crystal_system)
CRYSTAL_SYSTEMS = frozenset(
    {"triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"}
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it fail loudly when it is missing (it is present in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set XRDSOLVE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_data(shared_data: Path) -> Path:
    return shared_data / "real"


@pytest.fixture(scope="session")
def real_manifest(real_data: Path) -> dict:
    return json.loads((real_data / "manifest.json").read_text())


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Batch tasks run in-process set torch's thread count for their worker; give it back after each test."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def mp20_test_structures(n: int, max_atoms: int = 24, b_iso: float = 0.6) -> list[tuple[str, Any]]:
    """The first ``n`` MP-20 test rows with at most ``max_atoms`` atoms in the conventional (refined) cell, as
    (material_id, Structure) with B_iso = ``b_iso`` Å² on every site."""
    import csv
    import io
    import warnings

    from pymatgen.io.cif import CifParser
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    rows = list(csv.DictReader(io.StringIO((STRUCTURE_DATA / "mp20_subset" / "test.csv").read_text())))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in rows:
            s = CifParser.from_str(r["cif"]).parse_structures(primitive=False)[0]
            s = SpacegroupAnalyzer(s, symprec=0.01).get_refined_structure()
            if len(s) > max_atoms:
                continue
            s.add_site_property("b_iso", [b_iso] * len(s))
            out.append((r["material_id"], s))
            if len(out) == n:
                break
    return out


def load_real_case(real_data: Path, real_manifest: Any, case: str) -> tuple[Any, Any, Any, dict, dict]:
    """(pattern, first structure, instrument, manifest cfg, G2_validation.json) of one real case."""
    from xrdsolve.conditioning.io import read_pattern
    from xrdsolve.conditioning.readers.gsas_instprm import read_instrument
    from xrdsolve.refine.params import load_cif

    entry = next(c for c in real_manifest if c["case"] == case)
    cfg, d = entry["cfg"], real_data / case
    g2 = json.loads((d / "G2_validation.json").read_text())
    inst = read_instrument(d / cfg["inst"])
    pattern = read_pattern(d / cfg["pattern"], radiation=inst.radiation)
    structure = load_cif(d / cfg["cifs"][0])[0]
    return pattern, structure, inst, cfg, g2


#: SH/L GSAS-II gives a histogram whose instrument file does not set it (its .prm importer ignores S/L, H/L)
G2_DEFAULT_SH_L = 0.002


def instrument_as_gsas2_read(inst: Any, cfg: dict) -> Any:
    """The instrument parameters of a real case as GSAS-II's validation fit used them: a GSAS-I .prm file's
    S/L + H/L is dropped by GSAS-II's importer, which keeps its default SH/L."""
    import dataclasses

    if Path(cfg["inst"]).suffix.lower() == ".prm":
        return dataclasses.replace(inst, SH_L=G2_DEFAULT_SH_L)
    return inst


def rutile() -> Any:
    """Rutile TiO2 (P4₂/mnm, a 4.5937, c 2.9587 Å, O x 0.3048) with B_iso Ti 0.5, O 0.7 Å²."""
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.5937, 2.9587), ["Ti", "O"], [[0, 0, 0], [0.3048, 0.3048, 0]]
    )
    s.add_site_property("b_iso", [0.5 if str(site.specie) == "Ti" else 0.7 for site in s])
    return s
