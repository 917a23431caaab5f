"""The CLI shell: help, and project errors → one stderr line with exit status 2."""

from __future__ import annotations

import subprocess
import sys

from xrdsolve.cli import app, main
from xrdsolve.errors import UsageError


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "bench" in out


def test_project_error_is_one_line_exit_2(capsys):
    @app.command("raise-usage-error-for-test", hidden=True)
    def _boom() -> None:
        raise UsageError("bad option --frobnicate: expected an integer")

    code = main(["raise-usage-error-for-test"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "bad option --frobnicate" in err


def test_unknown_command_exits_2(capsys):
    assert main(["no-such-command"]) == 2


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "xrdsolve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "Usage" in out.stdout


def test_exit_code_of_a_command_is_returned() -> None:
    import typer

    from xrdsolve.cli import app, main

    @app.command("zz-exit-code-test", hidden=True)
    def _exit_five() -> None:
        raise typer.Exit(5)

    try:
        assert main(["zz-exit-code-test"]) == 5
    finally:
        app.registered_commands = [c for c in app.registered_commands if c.name != "zz-exit-code-test"]
