"""GSAS-II at run time: is it importable, its scripting module (output silenced), one refinement run."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Iterator
from typing import Any

from ..errors import RefineError

log = logging.getLogger(__name__)


@functools.cache
def gsas_available() -> bool:
    """True when GSAS-II's scripting module (``GSASII.GSASIIscriptable``) can be imported."""
    try:
        with quiet():
            import GSASII.GSASIIscriptable  # type: ignore[import-not-found]  # noqa: F401
    except Exception as exc:  # a missing package or a broken build (missing compiled modules)
        log.debug("GSAS-II not importable: %s", exc)
        return False
    return True


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence GSAS-II's prints (it writes progress to stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue():
        log.debug("GSAS-II: %s", buf.getvalue()[-2000:])


def load_scriptable() -> Any:
    """The GSASIIscriptable module, or a RefineError saying GSAS-II is not installed."""
    if not gsas_available():
        raise RefineError(
            "GSAS-II is not installed (GSASII.GSASIIscriptable cannot be imported); "
            "build it from its source repository to use refine_gsas / --engine gsas"
        )
    with quiet():
        import GSASII.GSASIIfiles as g2fil  # type: ignore[import-not-found]
        import GSASII.GSASIIscriptable as g2sc  # type: ignore[import-not-found]

        g2fil.G2SetPrintLevel("none")
    return g2sc


def run_refinement(gpx: Any) -> None:
    """One GSAS-II refinement run (output silenced); its exceptions become RefineError with its message."""
    try:
        with quiet():
            gpx.refine()
    except Exception as exc:  # GSAS-II raises bare Exception / G2Exception subclasses
        msg = " ".join(str(exc).replace("\\n", " ").split())
        raise RefineError(f"GSAS-II refinement failed: {msg}") from exc
