"""Physical plausibility of candidates (xrdsolve.plausibility) and its use in the solve."""

from __future__ import annotations

import csv
import warnings

from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.cif import CifParser

from xrdsolve.plausibility import implausibility


def _cu3au_type(cell: Lattice) -> Structure:
    return Structure(cell, ["Er", "Pt", "Pt", "Pt"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_real_structure_is_plausible_and_a_collapsed_one_is_not() -> None:
    assert implausibility(_cu3au_type(Lattice.cubic(4.103)), Composition("ErPt3")) is None
    # the kind of candidate that outranked ErPt3 in a solve: the same atoms in a 2.05 × 2.05 × 2.37 Å cell
    why = implausibility(_cu3au_type(Lattice.tetragonal(2.05, 2.37)), Composition("ErPt3"))
    assert why is not None and "Å apart" in why


def test_periodic_images_and_composition_count() -> None:
    one_atom = Structure(Lattice.cubic(1.2), ["Pt"], [[0, 0, 0]])  # Pt 1.2 Å from its own images
    assert implausibility(one_atom) is not None
    why = implausibility(_cu3au_type(Lattice.cubic(4.103)), Composition("ErPt6"))
    assert why == "composition ErPt3, not ErPt6"


def test_a_cell_far_denser_than_crystals_is_implausible() -> None:
    """Two Mg3MnTe4 formula units in its 136 Å³ I-centred sub-cell: no pair is short enough to tell, but 16
    atoms take 0.30 of the volume they take in crystals. The real cell (one unit in 271 Å³) passes."""
    from xrdsolve.composition import MIN_VOLUME_FRACTION

    packed = Structure(
        Lattice.tetragonal(4.588, 6.487),
        ["Mg"] * 6 + ["Mn"] * 2 + ["Te"] * 8,
        [[0, 0.5, 0], [0.5, 0, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0, 0, 0.5], [0.5, 0.5, 0], [0, 0, 0],
         [0.5, 0.5, 0.5], [0.385, 0.885, 0.25], [0.115, 0.385, 0.25], [0.615, 0.115, 0.25],
         [0.885, 0.615, 0.25], [0.385, 0.115, 0.75], [0.115, 0.615, 0.75], [0.615, 0.885, 0.75],
         [0.885, 0.385, 0.75]],
    )  # fmt: skip
    why = implausibility(packed, Composition("Mg3MnTe4"))
    assert why is not None and f"at least {MIN_VOLUME_FRACTION} expected" in why, why
    real = Structure(
        Lattice.tetragonal(4.5836, 12.9022),
        ["Mg", "Mg", "Mg", "Mn", "Te", "Te", "Te", "Te"],
        [[0, 0, 0.7512], [0.5, 0.5, 0.5], [0, 0, 0.2488], [0.5, 0.5, 0], [0, 0.5, 0.3748], [0.5, 0, 0.1202],
         [0, 0.5, 0.8798], [0.5, 0, 0.6252]],
    )  # fmt: skip
    assert implausibility(real, Composition("Mg3MnTe4")) is None


def test_the_densest_real_crystals_clear_the_volume_floor(shared_data) -> None:
    """Diamond-like carbons (carbon_24) and perovskites (perov_5) are the densest structures of the shared sets
    for their atoms' estimated volumes (0.62 and 0.64 of it); every one clears MIN_VOLUME_FRACTION, and the
    densest are within 0.1 of it, so the floor is not far below what crystals reach."""
    from xrdsolve.composition import MIN_VOLUME_FRACTION, estimated_volume_per_formula
    from xrdsolve.generate.data import load_split

    lowest = 1.0
    for dataset in ("carbon_24", "perov_5"):
        for record in load_split(dataset, "val"):
            s = record.structure
            lowest = min(lowest, s.volume / estimated_volume_per_formula(s.composition))
    assert MIN_VOLUME_FRACTION < lowest < MIN_VOLUME_FRACTION + 0.1


def test_no_mp20_structure_is_called_implausible(shared_data) -> None:
    """Every MP-20 train and validation structure (970, H-bearing hydroxides included) passes."""
    n = 0
    csv.field_size_limit(1 << 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for split in ("train", "val"):
            with (shared_data / "structures" / "mp20_subset" / f"{split}.csv").open(newline="") as fh:
                for row in csv.DictReader(fh):
                    s = CifParser.from_str(row["cif"]).parse_structures(primitive=False)[0]
                    assert implausibility(s, s.composition) is None, (row["material_id"], implausibility(s))
                    n += 1
    assert n > 900


def test_solve_pool_leaves_implausible_candidates_out() -> None:
    from xrdsolve.pipeline import _plausible, _Pool

    pool = _Pool()
    pool.add(_cu3au_type(Lattice.cubic(4.103)), {"source": "enumerated+indexing", "composition": "ErPt3"})
    pool.add(_cu3au_type(Lattice.tetragonal(2.05, 2.37)), {"source": "generator", "composition": "ErPt3"})
    tried: dict = {}
    kept = _plausible(pool, tried)
    assert len(kept) == 1 and kept.provenance[0]["source"] == "enumerated+indexing"
    assert tried["plausibility"]["left_out_by_source"]["generator"]["left_out"] == 1
