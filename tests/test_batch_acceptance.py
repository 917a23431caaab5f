"""Issue 7 acceptance: ≥ 200 patterns + 5 corrupt files, 2 workers, interrupted by SIGINT and by a
killed worker, resumed; then the same batch on Dask (LocalCluster) gives the same rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_helpers import CORRUPT, store_rows, write_corrupt, write_patterns

N_GOOD = 200
COMPARED = ("path", "status", "error", "n_peaks", "content_hash", "options_hash", "task")


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "xrdsolve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_rows(outdir: Path, n: int, proc: subprocess.Popen, limit: float = 180.0) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        rows = len(store_rows(outdir))
        if rows >= n:
            return rows
        if proc.poll() is not None:
            pytest.fail(f"batch ended before {n} rows: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail(f"fewer than {n} rows after {limit} s")


def _pool_workers(pid: int) -> list[int]:
    """Process-pool worker PIDs among the children of ``pid`` (not the resource tracker)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    out = []
    for k in kids:
        try:
            cmd = Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(k)
    return out


def _check_final(outdir: Path, good: list[Path]) -> list[dict]:
    rows = store_rows(outdir)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == len(by_name) == N_GOOD + len(CORRUPT)  # no duplicates, nothing missing
    for p in good:
        r = by_name[p.name]
        assert r["status"] == "ok", r
        folder = outdir / r["output_dir"]
        assert (folder / "summary.json").is_file() and (folder / "peaks.csv").is_file()
    for name, (_, word) in CORRUPT.items():
        r = by_name[name]
        assert r["status"] == "error" and word in r["error"] and name in r["error"], r
    outputs = sorted(p.name for p in (outdir / "outputs").iterdir())
    assert outputs == sorted(Path(by_name[p.name]["output_dir"]).name for p in good)
    assert not any((outdir / ".partial").iterdir())
    return rows


@pytest.mark.slow
def test_batch_interrupted_killed_resumed_and_dask_agrees(tmp_path):
    good = write_patterns(tmp_path / "in", N_GOOD, points=3000)
    write_corrupt(tmp_path / "in" / "corrupt")
    out = tmp_path / "out"
    args = ("batch", str(tmp_path / "in"), "-o", str(out), "--workers", "2", "--no-progress")

    # 1. Ctrl-C part-way: a clean stop, exit status 130, a consistent partial store
    proc = _cli(*args)
    _wait_rows(out, 30, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "resume" in stderr
    n1 = len(store_rows(out))
    assert 30 <= n1 < N_GOOD + len(CORRUPT)

    # 2. resume, and kill a worker process (as the OOM killer would) part-way
    proc = _cli(*args)
    _wait_rows(out, n1 + 30, proc)
    victims = _pool_workers(proc.pid)
    assert victims, "no pool worker found"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "worker restart" in stdout
    assert f"{n1} skipped" in stdout
    rows = _check_final(out, good)

    # 3. the same command again: nothing left to do
    proc = _cli(*args)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"{N_GOOD + len(CORRUPT)} skipped" in stdout

    # 4. Dask LocalCluster: the same rows
    out_dask = tmp_path / "out_dask"
    proc = _cli(
        "batch",
        str(tmp_path / "in"),
        "-o",
        str(out_dask),
        "--scheduler",
        "local",
        "--workers",
        "2",
        "--no-progress",
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "Dask LocalCluster" in stdout
    rows_dask = _check_final(out_dask, good)
    assert [{k: r[k] for k in COMPARED} for r in rows_dask] == [{k: r[k] for k in COMPARED} for r in rows]
