"""Shared fixtures: the location of ../shared/data (present in CI beside the checkout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XRDSOLVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
REAL_DATA = SHARED_DATA / "real"
STRUCTURE_DATA = SHARED_DATA / "structures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it fail loudly when it is missing (it is present in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set XRDSOLVE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_data(shared_data: Path) -> Path:
    return shared_data / "real"


@pytest.fixture(scope="session")
def real_manifest(real_data: Path) -> dict:
    return json.loads((real_data / "manifest.json").read_text())


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Batch tasks run in-process set torch's thread count for their worker; give it back after each test."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
