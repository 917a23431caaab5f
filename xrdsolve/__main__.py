"""``python -m xrdsolve`` runs the command line."""

from xrdsolve.cli import run

run()
