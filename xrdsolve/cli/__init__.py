"""The ``xrdsolve`` command line.

Each command lives in its own module under ``xrdsolve.cli`` and registers itself on :data:`app`
(or on :data:`bench_app` for ``xrdsolve bench NAME``). Heavy imports happen inside the commands so
``xrdsolve --help`` stays fast. Project errors become one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

try:  # typer ≥ 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as _click_exc  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exc  # type: ignore[no-redef]

app = typer.Typer(
    name="xrdsolve",
    help="Crystal structure solution from powder diffraction patterns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
bench_app = typer.Typer(
    help="Benchmarks: each prints one JSON line of figures (ratios against references measured in the same run).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

#: Command modules, imported in this order to register their commands.
COMMAND_MODULES = (
    "xrdsolve.cli.pattern_commands",
    "xrdsolve.cli.simulate_command",
    "xrdsolve.cli.refine_command",
    "xrdsolve.cli.train_command",
    "xrdsolve.cli.generate_command",
    "xrdsolve.cli.index_command",
    "xrdsolve.cli.solve_command",
    "xrdsolve.cli.batch_command",
    "xrdsolve.cli.bench_forward",
    "xrdsolve.cli.bench_refine",
    "xrdsolve.cli.bench_solve",
    "xrdsolve.cli.bench_real",
    "xrdsolve.cli.bench_index",
)


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != name:
                raise


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit status."""
    from xrdsolve.errors import USER_ERRORS

    _register()
    prog = "xrdsolve"
    try:
        rv = app(args=argv, prog_name=prog, standalone_mode=False)
        if isinstance(rv, int):  # click returns typer.Exit's code in non-standalone mode
            return rv
    except typer.Exit as exc:
        return int(exc.exit_code)
    except _click_exc.ClickException as exc:
        exc.show()
        return 2
    except typer.Abort:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"{prog}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: keep the traceback available without dumping it on users
        if os.environ.get("XRDSOLVE_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc} (set XRDSOLVE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 3
    return 0


def run() -> None:  # pragma: no cover - thin wrapper
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
