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


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory) -> dict[str, Path]:
    """One tiny finished CFN-SR run on eGeMAPS functionals of generated tones (tests/test_predict.py), trained
    once per test process for the hostile corpora (test_hostile_*.py), which damage copies of it; its
    store, root, unit and a one-second tone to predict on."""
    import soundfile as sf
    from test_predict import RATE, SMALL_CFNSR, make_tone_store, tone

    from emocli.runs import layout
    from emocli.training.config import resolve_config
    from emocli.training.trainer import train_run

    data = tmp_path_factory.mktemp("hostile")
    store = make_tone_store(data / "tones", n=24)
    config = resolve_config("cfnsr", overrides=[*SMALL_CFNSR, "epochs=2"], seeds=[1], folds=[0], modalities=["audio"])
    root = train_run("cfnsr", store.path, config, out=data / "runs", name="base").root
    wav = data / "tone.wav"
    sf.write(wav, tone("high", 1.0, seed=5), RATE)
    return {"store": store.path, "root": root, "unit": layout.unit_dir(root, 1, 0), "wav": wav}
