"""The one distribution maps conditioning/ and refine/ to xrdsolve.conditioning / xrdsolve.refine."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"xrdsolve": "xrdsolve", "xrdsolve.conditioning": "conditioning", "xrdsolve.refine": "refine"}


def _declared_packages() -> list[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return cfg["tool"]["setuptools"]["packages"]


def _package_folders() -> set[str]:
    found = set()
    for dotted, folder in MAPPING.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


def test_every_package_folder_is_declared():
    assert _package_folders() == set(_declared_packages())


def test_subpackages_import_under_xrdsolve():
    for name in ("xrdsolve.refine", "xrdsolve.conditioning", "xrdsolve.cli"):
        assert importlib.import_module(name).__name__ == name


def test_no_top_level_refine_or_conditioning():
    code = (
        "import importlib.util,sys; sys.path=[p for p in sys.path if p not in ('', '.')];"
        "print(importlib.util.find_spec('refine') is None and importlib.util.find_spec('conditioning') is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "True"


def test_importing_xrdsolve_is_light():
    code = "import sys, xrdsolve, xrdsolve.refine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_wheel_contains_mapped_packages_only(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("xrdsolve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"xrdsolve"}
    assert "xrdsolve/refine/__init__.py" in names
    assert "xrdsolve/conditioning/__init__.py" in names
