"""Expand batch inputs: files, directories (recursive, by extension), glob patterns and CSV manifests.

A CSV manifest is a ``.csv`` file whose header has a ``path`` column; its other columns
(``composition``, ``radiation``, ``instrument``, ``model``) are per-pattern options that override the
command-line defaults. Relative paths inside a manifest are relative to the manifest's folder;
``model`` may list several CIF files separated by ``;``.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BatchInputError

#: Extensions picked up when a directory is scanned (lower case, with the dot). Powder CIFs
#: (``.cif``) are *not* picked up from directories, because folders of patterns usually hold the
#: model CIFs too; name them explicitly or with a glob.
PATTERN_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".xy",
        ".xye",
        ".dat",
        ".csv",
        ".txt",
        ".prn",
        ".gsa",
        ".gss",
        ".gsas",
        ".fxye",
        ".xra",
        ".cwn",
        ".xrdml",
        ".raw",
        ".chi",
    }
)

#: Extensions never picked up from directories (they usually hold model CIFs, not patterns).
_DIR_SCAN_EXCLUDED = frozenset({".cif", ".pdcif", ".rtv", ".mcif"})


def pattern_extensions() -> frozenset[str]:
    """Extensions picked up from directories: :data:`PATTERN_EXTENSIONS` plus those of every reader
    in ``xrdsolve.conditioning.io.FORMATS``, except CIF-family ones."""
    try:
        from xrdsolve.conditioning.io import FORMATS
    except ImportError:  # pragma: no cover - readers are part of the distribution
        return PATTERN_EXTENSIONS
    found = {ext.lower() for spec in FORMATS.values() for ext in spec.extensions}
    return frozenset(PATTERN_EXTENSIONS | found) - _DIR_SCAN_EXCLUDED


#: Per-pattern options a manifest may set; anything else in a manifest header is an error.
OPTION_COLUMNS: tuple[str, ...] = ("composition", "radiation", "instrument", "model")
#: Options whose values are file paths (resolved relative to the manifest).
PATH_OPTIONS: frozenset[str] = frozenset({"instrument", "model"})


@dataclass(frozen=True)
class BatchInput:
    """One pattern to process: its absolute path and its resolved options (``model`` is a tuple of paths)."""

    path: Path
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The identity of this input in the results store (its absolute path)."""
        return str(self.path)


def _is_manifest(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    header = [h.strip().lower() for h in next(csv.reader([first]), [])]
    return "path" in header


def _resolve_option(name: str, value: str, base: Path) -> Any:
    value = value.strip()
    if name == "model":
        parts = [p.strip() for p in value.replace("|", ";").split(";") if p.strip()]
        return tuple(str((base / p).resolve()) for p in parts)
    if name in PATH_OPTIONS:
        return str((base / value).resolve())
    return value


def normalise_options(options: Mapping[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Drop empty options, resolve file-valued ones to absolute paths (relative to ``base``)."""
    base = base or Path.cwd()
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value == "" or value == ():
            continue
        if name == "model" and not isinstance(value, str):
            value = ";".join(str(v) for v in value)
        out[name] = _resolve_option(name, str(value), base) if isinstance(value, str | Path) else value
    return out


def read_manifest(path: Path, defaults: Mapping[str, Any] | None = None) -> list[BatchInput]:
    """Read a CSV manifest (``path`` column + optional per-pattern option columns)."""
    base = path.parent.resolve()
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            unknown = [h for h in header if h and h != "path" and h not in OPTION_COLUMNS]
            if unknown:
                raise BatchInputError(
                    f"{path}: unknown manifest column(s) {', '.join(unknown)} "
                    f"(expected path, {', '.join(OPTION_COLUMNS)})"
                )
            rows = list(reader)
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{path}: manifest is not UTF-8 text") from exc
    inputs: list[BatchInput] = []
    for lineno, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
        rel = row.get("path", "").strip()
        if not rel:
            raise BatchInputError(f"{path}, line {lineno}: empty path")
        options = dict(defaults or {})
        options.update(
            {
                name: _resolve_option(name, row[name], base)
                for name in OPTION_COLUMNS
                if row.get(name, "").strip()
            }
        )
        inputs.append(BatchInput((base / rel).resolve(), options))
    return inputs


def _scan_dir(folder: Path, extensions: frozenset[str]) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if Path(f).suffix.lower() in extensions)
    return found


def expand_inputs(
    items: Iterable[str | os.PathLike[str]],
    defaults: Mapping[str, Any] | None = None,
    *,
    extensions: frozenset[str] | None = None,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> list[BatchInput]:
    """Expand files, directories, globs and CSV manifests into a de-duplicated, ordered input list.

    ``defaults`` are the command-line options, already normalised (see :func:`normalise_options`);
    manifest columns override them per row. ``extensions`` selects files in directories (default
    :func:`pattern_extensions`). ``exclude`` lists folders never scanned (the output folder).
    The first occurrence of a path wins. Raises :class:`BatchInputError` for a path that does not
    exist or a glob that matches nothing.
    """
    defaults = dict(defaults or {})
    exts = pattern_extensions() if extensions is None else extensions
    excluded = [Path(e).resolve() for e in exclude]
    seen: dict[Path, BatchInput] = {}

    def add(inp: BatchInput) -> None:
        if any(inp.path.is_relative_to(e) for e in excluded):
            return
        seen.setdefault(inp.path, inp)

    def add_path(p: Path) -> None:
        if p.is_dir():
            for f in _scan_dir(p, exts):
                add(BatchInput(f.resolve(), defaults))
        elif _is_manifest(p):
            for inp in read_manifest(p, defaults):
                add(inp)
        else:
            add(BatchInput(p.resolve(), defaults))

    for item in items:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.exists():
            add_path(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise BatchInputError(f"{text}: the pattern matches no file")
            for m in matches:
                add_path(Path(m))
        else:
            raise BatchInputError(f"{text}: no such file or directory")
    return list(seen.values())
