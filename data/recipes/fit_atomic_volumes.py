"""Fit per-element volumes (Å³ per atom) to the MP-20 training rows; prints the table used by
xrdsolve.composition.ELEMENT_VOLUMES. Run: .venv/bin/python data/recipes/fit_atomic_volumes.py

Non-negative least squares on relative errors: V_cell / V_cell ≈ Σ_el n_el v_el / V_cell.
Only the training split is used (never val/test). Elements seen fewer than 3 times are left out
(xrdsolve falls back to an atomic-radius estimate for them).
"""

from __future__ import annotations

import csv
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from scipy.optimize import nnls

TRAIN = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "structures"
    / "mp20_subset"
    / "train.csv"
)


def main(path: Path = TRAIN) -> None:
    warnings.simplefilter("ignore")
    rows = list(csv.DictReader(path.open()))
    structures = [Structure.from_str(r["cif"], fmt="cif") for r in rows]
    seen = Counter(el.symbol for s in structures for el in s.composition.elements)
    elements = sorted(el for el, n in seen.items() if n >= 3)
    index = {el: i for i, el in enumerate(elements)}
    a, b = [], []
    for s in structures:
        comp = s.composition.get_el_amt_dict()
        if any(el not in index for el in comp):
            continue
        row = np.zeros(len(elements))
        for el, n in comp.items():
            row[index[el]] = n / s.volume
        a.append(row)
        b.append(1.0)
    v, _ = nnls(np.array(a), np.array(b))
    pred = np.array(a) @ v
    print(f"# {len(a)} structures, median |rel err| {np.median(np.abs(pred - 1)):.3f}", file=sys.stderr)
    items = ", ".join(f'"{el}": {v[i]:.1f}' for i, el in enumerate(elements) if v[i] > 0)
    print("{" + items + "}")


if __name__ == "__main__":
    main()
