"""The batch runner: inputs, store, resume, fault tolerance, CLI (fast versions, ~20 inputs)."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from batch_helpers import CORRUPT, store_rows, write_corrupt, write_patterns

from xrdsolve.batch import BatchConfig, BatchInputError, ResultStore, expand_inputs, run_batch
from xrdsolve.batch.executors import ExecutorSpec
from xrdsolve.batch.inputs import normalise_options
from xrdsolve.batch.store import commit_output, options_hash, output_name
from xrdsolve.batch.tasks import Job, run_job
from xrdsolve.cli import main

FAULT_TASK = "batch_tasks:fault_task"


# -- inputs ----------------------------------------------------------------------------------------
def test_expand_files_dirs_globs_and_dedup(tmp_path):
    write_patterns(tmp_path / "a", 2, points=20)
    write_patterns(tmp_path / "a" / "deep", 1, points=20, seed=1)
    (tmp_path / "a" / "model.cif").write_text("data_x\n")
    (tmp_path / "a" / "notes.md").write_text("hello\n")
    (tmp_path / "b.xy").write_text("1 2\n3 4\n")
    items = expand_inputs([tmp_path / "a", str(tmp_path / "*.xy"), tmp_path / "a" / "sim_0000.xye"])
    names = [i.path.relative_to(tmp_path).as_posix() for i in items]
    assert names == ["a/sim_0000.xye", "a/sim_0001.xye", "a/deep/sim_0000.xye", "b.xy"]
    assert all(i.path.is_absolute() for i in items)


def test_expand_errors(tmp_path):
    with pytest.raises(BatchInputError, match="no such file"):
        expand_inputs([tmp_path / "missing.xye"])
    with pytest.raises(BatchInputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.nothing")])


def test_manifest_rows_override_defaults(tmp_path):
    write_patterns(tmp_path / "p", 2, points=20)
    (tmp_path / "m1.cif").write_text("data_a\n")
    (tmp_path / "m2.cif").write_text("data_b\n")
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "path,composition,radiation,model\np/sim_0000.xye,PbSO4,,m1.cif;m2.cif\np/sim_0001.xye,,MoKa,\n"
    )
    defaults = normalise_options({"radiation": "CuKa", "composition": None, "model": ()})
    a, b = expand_inputs([manifest], defaults)
    assert a.path == (tmp_path / "p" / "sim_0000.xye").resolve()
    assert a.options == {
        "radiation": "CuKa",
        "composition": "PbSO4",
        "model": (str(tmp_path / "m1.cif"), str(tmp_path / "m2.cif")),
    }
    assert b.options == {"radiation": "MoKa"}


def test_manifest_unknown_column(tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("path,colour\nx.xye,red\n")
    with pytest.raises(BatchInputError, match="unknown manifest column"):
        expand_inputs([manifest])


# -- store -----------------------------------------------------------------------------------------
def test_store_upsert_wal_and_counts(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        base = {"path": "/x", "task": "info", "options_hash": "h"}
        store.record({**base, "status": "error", "error": "boom"})
        store.record({**base, "status": "ok", "a": 4.1, "options": {"radiation": "CuKa"}})
        store.record({"path": "/y", "task": "info", "options_hash": "h", "status": "timeout"})
        assert store.counts() == {"ok": 1, "error": 0, "timeout": 1}
        (row,) = store.rows("ok")
        assert row["a"] == 4.1 and row["error"] is None
        assert json.loads(row["options"]) == {"radiation": "CuKa"}
        with pytest.raises(ValueError, match="status"):
            store.record({**base, "status": "running"})
    con = sqlite3.connect(tmp_path / "r.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_options_hash_follows_model_content(tmp_path):
    cif = tmp_path / "m.cif"
    cif.write_text("data_a\n")
    h1 = options_hash("refine", {"model": (str(cif),)})
    assert h1 == options_hash("refine", {"model": (str(cif),)})
    cif.write_text("data_b\n")
    assert options_hash("refine", {"model": (str(cif),)}) != h1
    assert options_hash("info", {}) != options_hash("info", {"radiation": "MoKa"})
    assert options_hash("info", {}, "1") != options_hash("info", {}, "2")


def test_commit_output_replaces_whole_folder(tmp_path):
    final = tmp_path / "outputs" / "x"
    old = tmp_path / "old"
    old.mkdir()
    (old / "stale.txt").write_text("old")
    commit_output(old, final)
    new = tmp_path / "new"
    new.mkdir()
    (new / "summary.json").write_text("{}")
    commit_output(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["summary.json"]
    assert not new.exists()
    assert output_name("/a/b/c.xye") != output_name("/a/d/c.xye")


# -- worker entry ----------------------------------------------------------------------------------
def test_run_job_reports_errors_as_data(tmp_path):
    bad = tmp_path / "bad.xye"
    bad.write_bytes(CORRUPT["nan.xye"][0])
    res = run_job(Job(str(bad), str(bad), "info", {}, str(tmp_path)))
    assert res.status == "error" and "non-finite" in res.error and "line 2" in res.error
    res = run_job(Job(str(bad), str(bad), "identify", {}, str(tmp_path)))
    assert res.status == "error" and "not available" in res.error
    res = run_job(Job(str(bad), str(bad), "no_such_task", {}, str(tmp_path)))
    assert res.status == "error" and "unknown task" in res.error


def test_run_job_timeout_in_main_thread_and_in_a_thread(tmp_path):
    hang = tmp_path / "hang.xye"
    hang.write_text("#SPIN\n1 2\n3 4\n")
    job = Job(str(hang), str(hang), FAULT_TASK, {}, str(tmp_path), timeout=0.5)
    t0 = time.perf_counter()
    assert run_job(job).status == "timeout"
    with ThreadPoolExecutor(1) as pool:  # Dask runs tasks in worker threads
        res = pool.submit(run_job, job).result(timeout=30)
    assert res.status == "timeout" and "0.5 s" in res.error
    assert time.perf_counter() - t0 < 10


# -- whole batches ---------------------------------------------------------------------------------
def _check_outputs(outdir: Path, rows: list[dict]) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        folder = outdir / r["output_dir"]
        assert (folder / "summary.json").is_file(), folder
    assert sorted(p.name for p in (outdir / "outputs").iterdir()) == sorted(
        Path(r["output_dir"]).name for r in ok
    )
    assert not any((outdir / ".partial").iterdir())


def test_batch_faults_resume_and_retry_failed(tmp_path):
    good = write_patterns(tmp_path / "in", 16, points=40)
    for name, first in [("crash", "#CRASH"), ("spin", "#SPIN"), ("fail", "#FAIL")]:
        (tmp_path / "in" / f"{name}.xye").write_text(f"{first}\n1 2\n3 4\n")
    out = tmp_path / "out"
    items = expand_inputs([tmp_path / "in"])
    cfg = BatchConfig(task=FAULT_TASK, timeout=2.0, retry=1, progress=False)
    s = run_batch(items, out, config=cfg, workers=2)
    assert (s.ok, s.error, s.timeout, s.skipped) == (16, 2, 1, 0)
    assert s.worker_restarts >= 2
    rows = {Path(r["path"]).name: r for r in store_rows(out)}
    assert len(rows) == 19
    assert "worker process died" in rows["crash.xye"]["error"]
    assert rows["crash.xye"]["attempts"] >= 2
    assert rows["spin.xye"]["status"] == "timeout" and "timed out after 2 s" in rows["spin.xye"]["error"]
    assert rows["fail.xye"]["error"] == "RuntimeError: deliberate failure"
    assert all(rows[p.name]["status"] == "ok" for p in good)
    _check_outputs(out, list(rows.values()))
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 19

    # resume: nothing to do
    s = run_batch(items, out, config=cfg, workers=2)
    assert (s.ok, s.failed, s.skipped) == (0, 0, 19)
    # a changed file is re-run, and only it
    good[0].write_text(good[1].read_text())
    s = run_batch(items, out, config=cfg, workers=1)
    assert (s.ok, s.failed, s.skipped) == (1, 0, 18)
    # --retry-failed re-runs the three failures (fixed in the meantime)
    for name in ("crash", "spin", "fail"):
        (tmp_path / "in" / f"{name}.xye").write_text("1 2\n3 4\n")
    s = run_batch(
        items, out, config=BatchConfig(task=FAULT_TASK, retry_failed=True, progress=False), workers=2
    )
    assert (s.ok, s.failed) == (3, 0)
    assert {r["status"] for r in store_rows(out)} == {"ok"}
    _check_outputs(out, store_rows(out))


def test_any_executor_is_accepted(tmp_path):
    write_patterns(tmp_path / "in", 4, points=1500)
    with ThreadPoolExecutor(2) as pool:
        s = run_batch(
            expand_inputs([tmp_path / "in"]),
            tmp_path / "out",
            config=BatchConfig(task="info", progress=False),
            executor=pool,
            workers=2,
        )
    assert s.ok == 4
    rows = store_rows(tmp_path / "out")
    assert all(r["n_peaks"] >= 2 for r in rows)


class _BreaksOnSubmit(ThreadPoolExecutor):
    """A pool that is found broken at its ``n``-th submit, as when a worker dies between two polls."""

    def __init__(self, n: int) -> None:
        super().__init__(2)
        self.calls, self.n = 0, n

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.n:
            raise BrokenProcessPool("a child process terminated abruptly")
        return super().submit(fn, *args, **kwargs)


def test_pool_broken_between_polls_loses_no_input(tmp_path):
    """Deterministic: submit raises BrokenProcessPool for the 3rd input; the runner restarts the pool
    and that input (and every other) still ends with exactly one ok row and no partial folder."""
    write_patterns(tmp_path / "in", 6, points=1500)
    pools = [_BreaksOnSubmit(3)]

    def fresh() -> ThreadPoolExecutor:
        pools.append(ThreadPoolExecutor(2))
        return pools[-1]

    spec = ExecutorSpec(pools[0], 2, fresh, "flaky pool")
    s = run_batch(
        expand_inputs([tmp_path / "in"]),
        tmp_path / "out",
        config=BatchConfig(task="info", progress=False),
        executor=spec,
    )
    for pool in pools:
        pool.shutdown(wait=True)
    assert (s.ok, s.failed, s.worker_restarts) == (6, 0, 1)
    rows = store_rows(tmp_path / "out")
    assert sorted(Path(r["path"]).name for r in rows) == [f"sim_{i:04d}.xye" for i in range(6)]
    assert {r["status"] for r in rows} == {"ok"}
    _check_outputs(tmp_path / "out", rows)
    assert not list((tmp_path / "out").glob(".partial/*"))


def test_cli_batch_info_and_report(tmp_path, capsys):
    write_patterns(tmp_path / "in", 15, points=400)
    write_corrupt(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["batch", str(tmp_path / "in"), "-o", str(out), "--workers", "2", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "20 inputs: 15 ok, 5 error" in text
    rows = {Path(r["path"]).name: r for r in store_rows(out)}
    assert len(rows) == 20
    for name, (_, word) in CORRUPT.items():
        assert rows[name]["status"] == "error"
        assert word in rows[name]["error"] and name in rows[name]["error"]
    summary = json.loads((out / rows["sim_0000.xye"]["output_dir"] / "summary.json").read_text())
    assert summary["n_points"] == 400 and summary["radiation"] is None
    assert (out / rows["sim_0000.xye"]["output_dir"] / "peaks.csv").is_file()
    _check_outputs(out, list(rows.values()))

    # same command again: all skipped; a different option re-runs everything
    assert main(argv) == 0
    assert "20 skipped" in capsys.readouterr().out
    assert main([*argv, "--radiation", "CuKa"]) == 0
    assert "15 ok, 5 error" in capsys.readouterr().out
    summary = json.loads((out / rows["sim_0000.xye"]["output_dir"] / "summary.json").read_text())
    assert summary["radiation"] == "CuKa"

    os.remove(out / "results.csv")
    assert main(["batch-report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "15 ok, 5 error, 0 timeout" in report and "empty file" in report
    assert (out / "results.csv").is_file()


def test_cli_rejects_unknown_task_and_empty_input(tmp_path, capsys):
    assert main(["batch", str(tmp_path), "-o", str(tmp_path / "o"), "--task", "frobnicate"]) == 2
    assert "--task" in capsys.readouterr().err
    assert main(["batch", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert main(["batch-report", str(tmp_path)]) == 2
    assert "not a batch output folder" in capsys.readouterr().err


def test_sigterm_stops_at_once_and_kills_workers(tmp_path):
    import signal
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a_ok.xye").write_text("1 2\n3 4\n")
    for i in range(3):
        (tmp_path / "in" / f"hang{i}.xye").write_text("#HANG\n1 2\n3 4\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "xrdsolve", "batch", str(tmp_path / "in"), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--task", FAULT_TASK, "--workers", "2", "--no-progress"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    t0 = time.monotonic()
    while not store_rows(out) and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    time.sleep(0.5)  # the hanging jobs are running now
    children = [
        int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir() for c in (t / "children").read_text().split()
    ]
    os.killpg(proc.pid, signal.SIGTERM)  # as `timeout` and SLURM do: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "worker process died" not in err
    assert [Path(r["path"]).name for r in store_rows(out)] == ["a_ok.xye"]
    time.sleep(1)
    alive = []
    for c in children:
        try:
            if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace"):
                alive.append(c)
        except OSError:  # gone
            pass
    assert not alive


def test_workers_recycled_after_n_patterns(tmp_path):
    from xrdsolve.batch import process_pool

    write_patterns(tmp_path / "in", 3, points=40)
    spec = process_pool(1, max_tasks_per_worker=1)
    try:
        s = run_batch(
            expand_inputs([tmp_path / "in"]),
            tmp_path / "out",
            config=BatchConfig(task=FAULT_TASK, progress=False),
            executor=spec,
        )
    finally:
        spec.close()
    assert s.ok == 3
    assert len({r["worker"] for r in store_rows(tmp_path / "out")}) == 3


def test_solve_task_wiring(tmp_path, monkeypatch):
    """The solve task passes the batch options to xrdsolve.pipeline.solve and stores the best candidate
    (the solver itself is replaced by a stub here: it takes minutes; its own tests cover it)."""
    from pymatgen.core import Structure

    import xrdsolve.pipeline as pipeline
    from xrdsolve.batch.tasks import task_solve
    from xrdsolve.solution import Candidate, Solution

    examples = Path(__file__).resolve().parents[1] / "data" / "examples"
    rutile = Structure.from_file(examples / "rutile_TiO2.cif")
    seen = {}

    def fake_solve(pattern, composition, *, radiation, instrument, options, progress):
        seen.update(composition=composition, radiation=radiation, options=options, progress=progress)
        return Solution(pattern, [Candidate(1, rutile, 0.12, 0.09, 1.5)])

    monkeypatch.setattr(pipeline, "solve", fake_solve)
    opts = {"composition": "TiO2", "seed": 7, "n_candidates": 16, "use_generator": False}
    out = tmp_path / "o"
    out.mkdir()
    fields = task_solve(examples / "demo_pattern.xye", opts, out)
    assert seen["composition"] == "TiO2" and seen["progress"] is False
    assert (seen["options"].seed, seen["options"].n_candidates, seen["options"].use_generator) == (
        7,
        16,
        False,
    )
    assert fields["formula"] == "TiO2" and fields["spacegroup"] == "P4_2/mnm" and fields["rwp"] == 0.12
    assert fields["lattice"]["a"] == pytest.approx(4.5937)
    assert (out / "summary.json").is_file() and (out / "rank01.cif").is_file()

    monkeypatch.setattr(pipeline, "solve", lambda p, c, **kw: Solution(p, [], messages=["no peaks found"]))
    with pytest.raises(Exception, match="no solution: no peaks found"):
        task_solve(examples / "demo_pattern.xye", opts, out)
