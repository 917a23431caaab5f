"""Write data/examples/anatase_TiO2.cif from published values (used by the notebooks' two-phase examples).

Anatase TiO2, tetragonal I4_1/amd (141), Z = 4: a = 3.7842 Å, c = 9.5146 Å, O on 8e with z = 0.2081 in
origin choice 1 (Ti on 4a at 0,0,0) — Horn, Schwerdtfeger & Meagher, Z. Kristallogr. 136 (1972) 273;
B_iso typical room-temperature values. The structure is built with pymatgen from the space group and
checked (Ti–O bond lengths 1.93–1.98 Å, 12 atoms in the conventional cell) before it is written.

Run: .venv/bin/python data/recipes/make_anatase_cif.py [OUT.cif]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

OUT = Path(__file__).resolve().parent.parent / "examples" / "anatase_TiO2.cif"
A, C, Z_O = 3.7842, 9.5146, 0.2081
B_ISO = {"Ti": 0.55, "O": 0.75}  # Å²
HEADER = """# Anatase, TiO2 — written by data/recipes/make_anatase_cif.py from published values
# (tetragonal I4_1/amd, Z = 4; a, c, z(O) from Horn, Schwerdtfeger & Meagher, Z. Kristallogr. 136
#  (1972) 273, origin choice 1; B_iso typical values). Used by the notebooks' two-phase examples.
"""


def anatase() -> Structure:
    """Conventional anatase cell (12 atoms) with a ``b_iso`` site property (Å²)."""
    # pymatgen's "I4_1/amd" symmetry operations are those of origin choice 1: no origin shift needed
    ti = np.array([0.0, 0.0, 0.0])
    o = np.array([0.0, 0.0, Z_O])
    s = Structure.from_spacegroup("I4_1/amd", Lattice.tetragonal(A, C), ["Ti", "O"], [ti, o])
    s.add_site_property("b_iso", [B_ISO[site.specie.symbol] for site in s])
    return s


def check(s: Structure) -> None:
    if len(s) != 12 or s.composition.reduced_formula != "TiO2":
        raise RuntimeError(f"anatase cell has {len(s)} atoms ({s.composition}); expected Ti4O8")
    for i, site in enumerate(s):
        if site.specie.symbol == "Ti":
            d = sorted(n.nn_distance for n in s.get_neighbors(site, 2.2))
            if len(d) != 6 or not (1.92 < d[0] and d[-1] < 1.99):
                raise RuntimeError(f"Ti{i}: Ti–O distances {d} are not anatase's 4 × 1.93 + 2 × 1.98 Å")


def write(out: Path = OUT) -> Path:
    s = anatase()
    check(s)
    text = str(CifWriter(s, symprec=0.01))
    # CifWriter drops b_iso: add the column to the atom-site loop
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "_atom_site_occupancy")
    lines.insert(start + 1, " _atom_site_B_iso_or_equiv")
    for j in range(start + 2, len(lines)):
        parts = lines[j].split()
        if not parts or parts[0].startswith(("_", "loop_")):
            break
        lines[j] = lines[j] + f"  {B_ISO[parts[0].rstrip('0123456789+-')]:.2f}"
    out.write_text(HEADER + "\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
