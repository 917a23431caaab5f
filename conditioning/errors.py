"""Exceptions raised by xrdsolve.conditioning."""

from __future__ import annotations

import os


class ConditioningError(Exception):
    """Base class of every error raised by xrdsolve.conditioning."""


class PatternFormatError(ConditioningError, ValueError):
    """A pattern file that cannot be read as the format it claims (or any supported format).

    The message names the file, the line (1-based) or byte offset where possible, and what was
    expected there.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        message: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        expected: str | None = None,
    ) -> None:
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.offset = offset
        self.expected = expected
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where += f", line {line}"
        elif offset is not None:
            where += f", byte {offset}"
        text = f"{where}: {message}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class UnknownFormatError(PatternFormatError):
    """The content matches none of the supported pattern formats."""


class MissingWavelengthError(ConditioningError, ValueError):
    """A wavelength is needed (e.g. data given in Q, or Q/d asked of a pattern) but none is known."""


class PatternDataError(ConditioningError, ValueError):
    """Pattern arrays that violate the Pattern invariants (lengths, finiteness, monotonic 2θ)."""
