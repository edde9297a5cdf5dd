"""Shared fixtures. Real data lives in ../shared/data beside the repository; tests that need it skip
cleanly when it is absent (a user's checkout will not have it)."""

from __future__ import annotations

import os
from pathlib import Path

# Two pytest workers share two cores: one thread each keeps them from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMO_SHARED_DATA", REPO.parent / "shared" / "data"))


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    return path


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    return _shared("ravdess")


@pytest.fixture(scope="session")
def meld_root() -> Path:
    return _shared("meld")


@pytest.fixture(scope="session")
def mosei_root() -> Path:
    return _shared("mosei")
