"""Audio augmentation (features/audio/augment.py): deterministic per sample, read through by the extractors,
made by the corpora dataset, and kept out of validation and test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_cross_corpus import home  # noqa: F401 - a fixture

from emocli.core.errors import ConfigError
from emocli.core.types import AUGMENTATIONS
from emocli.data.splits import make_splits
from emocli.datasets import load_dataset
from emocli.features.audio.augment import augment
from emocli.features.audio.io import audio_input_fingerprint, read_sample_audio
from emocli.training.crosscorpus import protocol_units

RATE = 16000


def voice() -> np.ndarray:
    t = np.arange(RATE) / RATE
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_each_augmentation_changes_the_audio_the_same_way_for_a_sample(kind):
    signal = voice()
    once, again, other = augment(signal, RATE, kind, "a"), augment(signal, RATE, kind, "a"), augment(signal, RATE, kind, "b")
    np.testing.assert_array_equal(once, again)
    assert np.abs(once).max() <= 1.0 and once.dtype == np.float32
    assert kind == "telephone" or not np.array_equal(once, other)  # a telephone line has no random parameter
    if kind == "speed":
        assert 0.85 * len(signal) < len(once) < 1.15 * len(signal) and len(once) != len(signal)
    else:
        assert len(once) == len(signal) and not np.allclose(once, signal, atol=1e-3)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        augment(signal, RATE, "underwater", "a")


def test_extractors_read_a_row_through_its_augmentation(tmp_path):
    path = tmp_path / "v.wav"
    sf.write(path, voice(), RATE)
    plain = {"sample_id": "v", "audio_path": str(path)}
    noisy = {**plain, "sample_id": "v#noise", "augmentation": "noise"}
    clean, _ = read_sample_audio(plain, RATE)
    heard, _ = read_sample_audio(noisy, RATE)
    np.testing.assert_array_equal(heard, augment(clean, RATE, "noise", "v#noise"))
    assert audio_input_fingerprint(noisy) != audio_input_fingerprint(plain)  # the cache tells them apart


def test_corpora_add_augmented_training_copies_that_never_validate_or_test(home):  # noqa: F811 - the fixture
    table = load_dataset("corpora", home, augment=2).table
    copies = table[table["augmentation"].notna()]
    originals = table[table["augmentation"].isna()]
    assert set(copies["sample_id"].str.split("#").str[0]) == set(originals.loc[originals["split"] == "train", "sample_id"])
    assert copies.groupby(copies["sample_id"].str.split("#").str[0]).size().eq(2).all()
    assert set(copies["augmentation"]) <= set(AUGMENTATIONS) and (copies["split"] == "train").all()
    for fold in (0, 1):
        splits = make_splits(table, fold=fold, seed=1, valid_fraction=0.5)
        for part in ("valid", "test"):
            assert table.iloc[splits[part]]["augmentation"].isna().all()
    everything = make_splits(table, fold=0, seed=1, valid_fraction=0.0)
    assert table.iloc[everything["train"]]["augmentation"].notna().any()
    for unit in protocol_units(table, seeds=[1], protocols=["loco"]):
        assert table.iloc[unit.rows["test"]]["augmentation"].isna().all()
        trained = table.iloc[unit.rows["train"]]
        assert unit.corpus not in set(trained["corpus"])  # the left-out corpus's copies do not train either
    assert pd.api.types.is_string_dtype(table["corpus"])
