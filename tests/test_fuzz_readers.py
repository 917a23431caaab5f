"""Property-based tests: random bytes and mutated real files against every reader.

Only the project's own exceptions (ConditioningError subclasses) may escape. The default run
tries a few hundred inputs; ``pytest -m slow tests/test_fuzz_readers.py`` runs ≥ 10,000.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrdsolve.conditioning import ConditioningError, Pattern
from xrdsolve.conditioning.io import FORMATS, read_bytes

# one real file per reader family (explicit-x column files cut to their first 400 lines)
SEEDS = {
    "xy": "multi_cpd1a_qpa_round_robin_lab/cpd-1a.prn",
    "fullprof-dat": "cimetidine_xray_fox/cime.dat",
    "gsas": "pbso4_neutron_d1a/PBSO4.CWN",
    "gsas-fxye": "multi_cucr2o4_cuo_11bm/OH_00.fxye",
    "xrdml": "multi_tio2_zno_xrdml_dara/TiO2_0p4009-ZnO_0p6010--8min.xrdml",
    "bruker-raw": "lab6_srm660c_lab/LaB6_Jan2018.raw",
    "chi": "ceo2_synchrotron_qspace/CeO2_mean_q.chi",
    "pdcif": "alumina_neutron_bt1/ALUMINA_pdcif.cif",
}
FORMAT_OF_SEED = {k: ("gsas" if k.startswith("gsas") else k) for k in SEEDS}


def _seed_bytes() -> dict[str, bytes]:
    out = {}
    for key, rel in SEEDS.items():
        data = (REAL_DATA / rel).read_bytes()
        if key in ("gsas-fxye", "xy", "chi"):
            data = b"\n".join(data.split(b"\n")[:400])
        out[key] = data
    return out


SEED_BYTES = _seed_bytes() if REAL_DATA.is_dir() else {}


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation: bit flips, truncation, line deletion/duplication, column swap, junk."""
    kind = int(rng.integers(0, 7))
    b = bytearray(data)
    if kind == 0 and b:  # bit flips
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 1:  # truncation
        return bytes(b[: int(rng.integers(0, len(b) + 1))])
    lines = bytes(b).split(b"\n")
    if kind == 2 and len(lines) > 1:  # delete lines
        for _ in range(int(rng.integers(1, 10))):
            if len(lines) > 1:
                del lines[int(rng.integers(0, len(lines)))]
        return b"\n".join(lines)
    if kind == 3 and len(lines) > 1:  # swap columns on some lines
        for _ in range(int(rng.integers(1, 30))):
            i = int(rng.integers(0, len(lines)))
            toks = lines[i].split()
            if len(toks) >= 2:
                toks[0], toks[1] = toks[1], toks[0]
                lines[i] = b" ".join(toks)
        return b"\n".join(lines)
    if kind == 4:  # overwrite a span with random bytes
        i = int(rng.integers(0, len(b) + 1))
        junk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        return bytes(b[:i]) + junk + bytes(b[i + len(junk) :])
    if kind == 5:  # replace numbers by nan/inf/huge/negative
        repl = [b"nan", b"inf", b"-1e400", b"-5", b"1e308", b"0"]
        for _ in range(int(rng.integers(1, 10))):
            i = int(rng.integers(0, len(lines)))
            toks = lines[i].split()
            if toks:
                toks[int(rng.integers(0, len(toks)))] = repl[int(rng.integers(0, len(repl)))]
                lines[i] = b" ".join(toks)
        return b"\n".join(lines)
    # duplicate / shuffle lines
    if len(lines) > 2:
        i, j = sorted(int(x) for x in rng.integers(0, len(lines), 2))
        lines[i:j] = lines[i:j][::-1]
    return b"\n".join(lines)


def _try_all(data: bytes, name: str) -> str:
    """Run every reader (and the sniffer) on ``data``; return an outcome tag; non-project errors escape."""
    outcomes = []
    for fmt in [None, *FORMATS]:
        try:
            p = read_bytes(data, source=name, format=fmt, radiation=None if fmt != "chi" else 0.1)
            assert isinstance(p, Pattern)
            assert np.all(np.diff(p.two_theta) > 0) and np.all(p.sigma > 0)
            outcomes.append("ok")
        except ConditioningError:
            outcomes.append("error")
    return ",".join(outcomes)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("xrdsolve").setLevel(logging.ERROR)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_only_project_errors(data: bytes) -> None:
    _try_all(data, "random.bin")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=400), st.sampled_from([b"RAW ", b"RAW2", b"RAW1.01", b"RAW4.00", b"<xrdMeasurements>"])
)
def test_random_bytes_behind_magic(data: bytes, magic: bytes) -> None:
    _try_all(magic + data, "magic.bin")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SEEDS)), st.integers(0, 2**32 - 1))
def test_mutated_real_files(key: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = mutate(SEED_BYTES[key], rng)
    fmt = FORMAT_OF_SEED[key]
    try:
        read_bytes(data, source=SEEDS[key], format=fmt, radiation=0.1 if fmt == "chi" else None)
    except ConditioningError:
        pass
    _try_all(data, SEEDS[key])


def test_unmutated_seeds_read(real_data: Path) -> None:
    for key, data in SEED_BYTES.items():
        read_bytes(
            data, source=SEEDS[key], format=FORMAT_OF_SEED[key], radiation=0.1 if key == "chi" else None
        )


@pytest.mark.slow
def test_fuzz_10000_mutations(real_data: Path) -> None:
    """≥ 10,000 mutated inputs (each through its own reader and the sniffer); records count and time."""
    rng = np.random.default_rng(20261125)
    keys = sorted(SEEDS)
    n = 0
    errors = 0
    t0 = time.perf_counter()
    while n < 10_000:
        key = keys[n % len(keys)]
        data = mutate(SEED_BYTES[key], rng)
        fmt = FORMAT_OF_SEED[key]
        for f in (fmt, None):
            try:
                read_bytes(data, source=SEEDS[key], format=f, radiation=0.1 if fmt == "chi" else None)
            except ConditioningError:
                errors += 1
        n += 1
    elapsed = time.perf_counter() - t0
    print(f"fuzz: {n} mutated inputs, {errors} project errors, {elapsed:.1f} s")
    assert n >= 10_000
