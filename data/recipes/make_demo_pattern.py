"""Simulate the bundled demo pattern (data/examples/demo_pattern.xye) with xrdsolve's own physics.

Rutile TiO2 from textbook values (data/examples/rutile_TiO2.cif), a lab Bragg–Brentano
diffractometer with Cu Kα1/Kα2, realistic profile (Caglioti U V W, Lorentzian size/strain X Y,
axial-divergence asymmetry), a small zero shift and sample displacement, a curved background with
a weak amorphous hump, and Poisson counting noise. Deterministic (seeded).

Run: .venv/bin/python data/recipes/make_demo_pattern.py [OUT.xye]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from xrdsolve.conditioning.io import write_pattern
from xrdsolve.conditioning.pattern import Pattern, SigmaSource
from xrdsolve.refine.physics import CrystalBatch, Instrument, ProfileParams, simulate
from xrdsolve.refine.radiation import Geometry, Radiation

HERE = Path(__file__).resolve().parent
CIF = HERE.parent / "examples" / "rutile_TiO2.cif"
OUT = HERE.parent / "examples" / "demo_pattern.xye"
SEED = 20261125

#: True instrument and sample parameters of the demo (GSAS-II units; see refine.physics.ProfileParams).
TRUTH = {
    "zero": 0.015,  # degrees 2θ
    "displacement": -25.0,  # μm
    "U": 4.0,
    "V": -2.5,
    "W": 3.5,  # centideg²
    "X": 2.0,
    "Y": 1.5,  # centideg
    "asym": 0.05,  # SH/L = S/L + H/L (GSAS-II)
}
PEAK_COUNTS = 25_000.0  # counts at the strongest peak


def rutile_structure():  # -> pymatgen Structure with b_iso site properties
    """The demo structure with B_iso (Å²) read from the CIF's _atom_site_B_iso_or_equiv."""
    from pymatgen.io.cif import CifParser

    parser = CifParser(str(CIF))
    structure = parser.parse_structures(primitive=False)[0]
    block = next(iter(parser.as_dict().values()))
    b_by_element = {
        sym.rstrip("0123456789+-"): float(b)
        for sym, b in zip(block["_atom_site_type_symbol"], block["_atom_site_B_iso_or_equiv"], strict=True)
    }
    structure.add_site_property("b_iso", [b_by_element[site.specie.symbol] for site in structure])
    return structure


def background(two_theta: np.ndarray) -> np.ndarray:
    """Counts: a decaying air-scatter/fluorescence baseline plus a weak amorphous hump near 25°."""
    t = np.deg2rad(two_theta)
    base = 180.0 + 2500.0 / two_theta + 40.0 * np.cos(t)
    hump = 60.0 * np.exp(-0.5 * ((two_theta - 25.0) / 6.0) ** 2)
    return base + hump


def make_demo_pattern(out: Path = OUT) -> Path:
    two_theta = np.round(np.arange(10.0, 100.0 + 1e-9, 0.02), 4)
    structure = rutile_structure()
    instrument = Instrument(
        radiation=Radiation.preset("CuKa"), geometry=Geometry.BRAGG_BRENTANO, anomalous=True
    )
    crystals = CrystalBatch.from_structures([structure])
    profile = ProfileParams.default(1, **TRUTH)
    with torch.no_grad():
        bragg = simulate(crystals, torch.as_tensor(two_theta), instrument, profile)[0].numpy()
    bragg *= PEAK_COUNTS / bragg.max()
    expected = bragg + background(two_theta)
    rng = np.random.default_rng(SEED)
    counts = rng.poisson(expected).astype(float)
    pattern = Pattern(
        two_theta=two_theta,
        intensity=counts,
        sigma=np.sqrt(np.maximum(counts, 1.0)),
        sigma_source=SigmaSource.COUNTING,
        radiation=instrument.radiation,
        geometry=Geometry.BRAGG_BRENTANO,
        meta={"sample": "rutile TiO2 (simulated by xrdsolve, data/recipes/make_demo_pattern.py)"},
    )
    return write_pattern(pattern, out)


if __name__ == "__main__":
    path = make_demo_pattern(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    print(f"wrote {path}")
