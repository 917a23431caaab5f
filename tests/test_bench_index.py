"""``xrdsolve bench index``: the true-cell check, the summary and the command on one benchmark pattern."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from xrdsolve.bench_index import summarise, true_cell_rank
from xrdsolve.cli import main


def _bcc_iron() -> Structure:
    return Structure(Lattice.cubic(2.8665), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_the_true_cell_is_the_conventional_or_the_primitive_lattice() -> None:
    truth = _bcc_iron()
    conventional = Lattice.cubic(2.8665)
    primitive = truth.get_primitive_structure().lattice
    wrong = Lattice.tetragonal(2.8665, 4.0)
    assert true_cell_rank([wrong, conventional], truth) == 2
    assert true_cell_rank([primitive], truth) == 1
    # the same lattice in another setting (axes permuted, a cell of equal volume) is still the true one
    assert true_cell_rank([Lattice.from_parameters(2.8665, 2.8665, 2.8665, 90, 90, 90)], truth) == 1
    # 2 % longer axes: 6 % more volume, not the true cell; a doubled cell is not either
    assert true_cell_rank([Lattice.cubic(2.8665 * 1.02)], truth) is None
    assert true_cell_rank([Lattice.tetragonal(2.8665, 2 * 2.8665)], truth) is None
    assert true_cell_rank([], truth) is None


def test_summary_counts_true_cells_used_and_first() -> None:
    rows = [
        {"true_cell_rank": 1, "cells": 3, "seconds": 1.0},
        {"true_cell_rank": 2, "cells": 3, "seconds": 3.0},
        {"true_cell_rank": None, "cells": 0, "seconds": 20.0},
        {"true_cell_rank": None, "cells": 2, "seconds": 5.0},
    ]
    out = summarise(rows)
    assert (out["n"], out["true_cell_used"], out["true_cell_first"], out["no_cell"]) == (4, 2, 1, 1)
    assert out["median_s"] == 4.0 and out["max_s"] == 20.0
    assert summarise([]) == {"n": 0}


def test_bench_index_command_on_one_pattern(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GdMgPd (row 4 of MP-20 val, hexagonal P-62m) is indexed on its true cell first; a second run reads the
    record instead of indexing again."""
    records = tmp_path / "records.jsonl"
    args = ["bench", "index", "--n", "5", "--part", "4/5", "--time-limit", "6", "--records", str(records)]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bench"] == "index" and out["n"] == 1
    assert out["true_cell_used"] == 1 and out["true_cell_first"] == 1
    (rec,) = [json.loads(line) for line in records.read_text().splitlines()]
    assert rec["index"] == 4 and rec["formula"] == "GdMgPd" and rec["true_cell_rank"] == 1
    # each search the solve ran, with its seconds (the strict search's actual time, not its limit)
    assert {"weak_lines", "strict"} <= set(rec["searches"])
    assert 0 < sum(rec["searches"].values()) <= rec["seconds"] + 0.1
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert len(records.read_text().splitlines()) == 1


def test_bench_index_rejects_a_malformed_part(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "index", "--part", "3/2"]) == 2
    assert "--part" in capsys.readouterr().err
