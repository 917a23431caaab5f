"""Export a batch's results store as ``results.csv`` (and ``results.parquet`` when pyarrow is installed)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from .store import COLUMNS, STORE_NAME, ResultStore

log = logging.getLogger(__name__)


def export_results(outdir: str | os.PathLike[str]) -> list[Path]:
    """Write ``OUTDIR/results.csv`` (and ``results.parquet`` if pyarrow is importable) from
    ``OUTDIR/results.sqlite``, atomically; returns the written paths. Rows are sorted by input path."""
    out = Path(outdir)
    with ResultStore(out / STORE_NAME, readonly=True) as store:
        rows = store.rows()
    written = [_write_csv(rows, out / "results.csv")]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        log.debug("pyarrow not installed: no Parquet export")
    else:
        table = pa.Table.from_pylist(rows, schema=None) if rows else pa.table({c: [] for c in COLUMNS})
        tmp = out / "results.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, out / "results.parquet")
        written.append(out / "results.parquet")
    return written


def _write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
