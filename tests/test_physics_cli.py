"""``xrdsolve simulate``: profile .xye and --sticks CSV against pymatgen."""

from __future__ import annotations

import csv
import warnings

import numpy as np
from pymatgen.core import Structure

from xrdsolve.cli import main
from xrdsolve.conditioning.io import read_pattern
from xrdsolve.refine.physics.reference import compare_sticks, pymatgen_sticks


def _lab6(real_data):
    return real_data / "lab6_srm660c_lab" / "LaB6_constructed.cif"


def test_sticks_match_pymatgen(real_data, tmp_path, capsys) -> None:
    out = tmp_path / "lab6.csv"
    assert main(["simulate", str(_lab6(real_data)), "--sticks", "--radiation", "CuKa", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["h", "k", "l", "d", "two_theta", "multiplicity", "intensity"]
    assert max(float(r["intensity"]) for r in rows) == 100.0
    tt = np.array([float(r["two_theta"]) for r in rows])
    inten = np.array([float(r["intensity"]) for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Structure.from_file(str(_lab6(real_data)))
    cmp = compare_sticks((tt, inten), pymatgen_sticks(s, 1.540593))
    assert cmp.unmatched == 0
    assert cmp.max_position_error < 1e-4
    assert cmp.max_intensity_error < 3.0  # WK95 vs pymatgen form factors
    r110 = next(r for r in rows if sorted(abs(int(r[c])) for c in "hkl") == [0, 1, 1])
    assert int(r110["multiplicity"]) == 12


def test_profile_xye(real_data, tmp_path, capsys) -> None:
    out = tmp_path / "lab6.xye"
    args = [
        "simulate",
        str(_lab6(real_data)),
        "--range",
        "15",
        "60",
        "--step",
        "0.02",
        "--x",
        "2",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    p = read_pattern(out)
    assert p.two_theta[0] == 15.0 and abs(p.two_theta[-1] - 60.0) < 1e-9
    assert p.radiation is not None and p.radiation.name == "CuKa"
    # strongest peak is LaB6 (110) at 30.38° (Kα1)
    assert abs(p.two_theta[int(np.argmax(p.intensity))] - 30.385) < 0.03


def test_bad_inputs_exit_2(tmp_path, capsys) -> None:
    assert main(["simulate", str(tmp_path / "missing.cif"), "-o", str(tmp_path / "a.xye")]) == 2
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif\n")
    assert main(["simulate", str(bad), "-o", str(tmp_path / "a.xye")]) == 2
    assert main(["simulate", str(bad), "--range", "50", "10", "-o", str(tmp_path / "a.xye")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_bench_forward_prints_json(shared_data, capsys) -> None:
    import json

    csv_path = shared_data / "structures" / "mp20_subset" / "val.csv"
    args = ["bench", "forward", "--n", "6", "--n-reference", "3", "--chunk", "2", "--workers", "2"]
    assert main([*args, "--structures", str(csv_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["bench"] == "forward" and figures["n_structures"] == 6 and figures["workers"] == 2
    assert figures["ratio"] > 0 and figures["unmatched_peaks"] == 0
    assert figures["max_position_error_deg"] < 1e-3 and figures["max_intensity_error_pct"] < 1.0
