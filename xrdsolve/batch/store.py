"""The SQLite results store of a batch: one row per input, written only by the coordinating process.

A row reaches status ``ok`` only after its output folder has been moved into place complete
(:func:`commit_output`), so a half-written output is never taken as done. The database runs in WAL
mode so ``xrdsolve batch-report`` can read it while a batch is running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE_NAME = "results.sqlite"
OUTPUTS_DIR = "outputs"
PARTIAL_DIR = ".partial"
SCHEMA_VERSION = 1

#: Columns of the ``results`` table, in export order.
COLUMNS: tuple[str, ...] = (
    "path",
    "status",
    "error",
    "task",
    "content_hash",
    "options_hash",
    "options",
    "formula",
    "spacegroup",
    "a",
    "b",
    "c",
    "alpha",
    "beta",
    "gamma",
    "rwp",
    "n_peaks",
    "seconds_read",
    "seconds_task",
    "seconds_wall",
    "attempts",
    "output_dir",
    "worker",
    "finished_at",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'timeout')),
    error TEXT,
    task TEXT NOT NULL,
    content_hash TEXT,
    options_hash TEXT NOT NULL,
    options TEXT,
    formula TEXT,
    spacegroup TEXT,
    a REAL, b REAL, c REAL, alpha REAL, beta REAL, gamma REAL,
    rwp REAL,
    n_peaks INTEGER,
    seconds_read REAL,
    seconds_task REAL,
    seconds_wall REAL,
    attempts INTEGER NOT NULL DEFAULT 1,
    output_dir TEXT,
    worker TEXT,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

STATUSES = ("ok", "error", "timeout")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def options_hash(task: str, options: Mapping[str, Any], task_version: str = "1") -> str:
    """Hash of what determines a result besides the pattern: task, its version and options.

    File-valued options (``instrument``, ``model``) contribute their contents, so editing a model
    CIF re-runs the inputs that use it.
    """
    canon: dict[str, Any] = {"task": task, "task_version": task_version}
    for name in sorted(options):
        value = options[name]
        if name in ("instrument", "model"):
            paths = [value] if isinstance(value, str) else list(value)
            value = [[p, sha256_file(p) if os.path.isfile(p) else None] for p in paths]
        canon[name] = value
    blob = json.dumps(canon, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def output_name(path: str | os.PathLike[str]) -> str:
    """A stable, unique folder name for an input: its stem plus 10 hex digits of its path's hash."""
    p = os.fspath(path)
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(p).stem)[:60] or "pattern"
    return f"{stem}-{hashlib.sha256(p.encode()).hexdigest()[:10]}"


def new_partial_dir(outdir: Path, name: str) -> Path:
    """A fresh, empty folder under ``OUTDIR/.partial`` for one attempt at an input."""
    d = outdir / PARTIAL_DIR / f"{name}.{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    return d


def commit_output(partial: Path, final: Path) -> None:
    """Move a complete output folder into place atomically, replacing any older one.

    ``os.replace`` cannot replace a non-empty folder, so an old folder is first renamed aside
    (atomic) and deleted after the new one is in place: at every instant ``final`` is either the old
    complete folder, absent, or the new complete folder.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    trash: Path | None = None
    if final.exists():
        trash = partial.parent / f".old-{final.name}.{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
    os.replace(partial, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def clean_partials(outdir: Path) -> int:
    """Delete leftovers of interrupted attempts; returns how many folders were removed."""
    root = outdir / PARTIAL_DIR
    if not root.is_dir():
        return 0
    n = 0
    for child in root.iterdir():
        shutil.rmtree(child, ignore_errors=True)
        n += 1
    return n


@dataclass(frozen=True)
class StoredRow:
    """The identity fields of a stored row (what resume decisions need)."""

    path: str
    status: str
    content_hash: str | None
    options_hash: str
    attempts: int


class ResultStore:
    """``OUTDIR/results.sqlite``: one row per input path (upserted), WAL mode."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(2, "No such file or directory", str(self.path))
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path, timeout=30.0)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.executescript(_SCHEMA)
            self._con.commit()
        self._con.row_factory = sqlite3.Row

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------------
    def get(self, path: str) -> StoredRow | None:
        """The stored identity of ``path``, or None."""
        r = self._con.execute(
            "SELECT path, status, content_hash, options_hash, attempts FROM results WHERE path = ?", (path,)
        ).fetchone()
        return None if r is None else StoredRow(*r)

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """All rows (optionally one status) as dicts in :data:`COLUMNS` order, sorted by path."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM results"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        return [dict(r) for r in self._con.execute(sql + " ORDER BY path", args)]

    def counts(self) -> dict[str, int]:
        """Number of rows per status."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._con.execute("SELECT status, COUNT(*) FROM results GROUP BY status"):
            out[status] = n
        return out

    # -- writes ----------------------------------------------------------------------------------
    def record(self, row: Mapping[str, Any]) -> None:
        """Insert or replace the row of ``row['path']`` (one transaction)."""
        values = {c: row.get(c) for c in COLUMNS}
        if values["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {values['status']!r}")
        if values["finished_at"] is None:
            values["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if values["attempts"] is None:
            values["attempts"] = 1
        if isinstance(values["options"], Mapping):
            values["options"] = json.dumps(values["options"], sort_keys=True, default=str)
        cols = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        with self._transaction():
            self._con.execute(
                f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", tuple(values.values())
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            yield
            self._con.commit()
        except BaseException:
            self._con.rollback()
            raise
