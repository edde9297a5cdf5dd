"""A hostile corpus for datasets, media, extractors and stores: every case gives a correct result or one
clear error naming the file (and row) and the cause; nothing in a dataset folder is executed.

All inputs are generated here (tests/hostile.py, tests/media.py); the store cases use the small fake
extractors of test_store.py so that they test the store, not a library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hostile import (
    RATE,
    crafted_pickle,
    cut_data,
    resampled,
    speech_like,
    with_sample_rate,
    write_faststart_m4a,
    write_wav,
    zero_frames,
)
from media import truncate, write_audio_only, write_garbage, write_video
from test_store import NpyFrames, NpyMean, make_sample_set

from emocli.core.errors import ConfigError, DatasetError, EmoError, ExtractionError
from emocli.core.samples import SampleSet
from emocli.core.types import Features, LabelMap
from emocli.data.inputs import InputSpec
from emocli.data.tables import load_data
from emocli.datasets.manifest import ManifestAdapter
from emocli.datasets.mosei import MoseiAdapter
from emocli.datasets.nemu import NemuAdapter
from emocli.features.audio.io import load_audio
from emocli.features.audio.mfcc import MfccExtractor
from emocli.features.store import FeatureStore, nonfinite_samples

# ------------------------------------------------------------------------------------------- pickles


def _mosei_dict() -> dict:
    import argparse

    rng = np.random.default_rng(0)
    part = {
        "src-text": [rng.normal(size=(60, 300)).astype(np.float32) for _ in range(2)],  # numpy arrays
        "src-audio": [rng.normal(size=(60, 74)).astype(np.float32) for _ in range(2)],
        "src-visual": [rng.normal(size=(60, 35)).astype(np.float32) for _ in range(2)],
        "tgt": [[2, 4, 3], [2, 5, 6, 3]],
    }
    return {
        "settings": argparse.Namespace(max_len=60),  # HHMPN's preprocessing stores its options this way
        "dict": {"tgt": {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "happy": 4, "sad": 5, "anger": 6}},
        **{split: part for split in ("train", "valid", "test")},
    }


@pytest.mark.parametrize("kind", ["torch", "pickle"])
@pytest.mark.parametrize("adapter", ["mosei", "nemu"])
def test_crafted_pickles_run_nothing_and_say_why(tmp_path, adapter, kind):
    marker = tmp_path / "PWNED"
    name = "train_valid_test.pt" if adapter == "mosei" else ("nemu.pt" if kind == "torch" else "nemu.pkl")
    folder = tmp_path / "data"
    folder.mkdir()
    crafted_pickle(folder / name, marker, kind)
    load = MoseiAdapter().load if adapter == "mosei" else NemuAdapter().load
    with pytest.raises(DatasetError) as error:
        load(folder)
    message = str(error.value)
    assert not marker.exists(), "unpickling ran the file's payload"
    assert message.startswith(f"{folder / name}: refused to unpickle") and "names io.open, which is not plain data" in message
    assert "run code" in message and "allow_pickle=true" in message and "\n" not in message


def test_plain_data_pickles_load_without_consent_and_anything_else_needs_it(tmp_path):
    """The research files hold numpy arrays and an argparse.Namespace: read without unpickling code. A
    file naming another global loads only with allow_pickle=true."""
    import fractions

    import torch

    data = _mosei_dict()
    torch.save(data, tmp_path / "train_valid_test.pt")
    samples = MoseiAdapter().load(tmp_path)
    assert samples.labels.names == ("happy", "sad", "anger") and len(samples.table) == 6
    assert samples.options["allow_pickle"] is False

    data["settings"] = fractions.Fraction(1, 3)  # harmless, but not plain data
    torch.save(data, tmp_path / "train_valid_test.pt")
    with pytest.raises(DatasetError, match="fractions.Fraction"):
        MoseiAdapter().load(tmp_path)
    assert len(MoseiAdapter(allow_pickle=True).load(tmp_path).table) == 6


# ------------------------------------------------------------------------------------------- audio


def test_truncated_wav_is_refused_naming_both_counts(tmp_path):
    whole = write_wav(tmp_path / "whole.wav", speech_like(3.3))
    cut = cut_data(whole, tmp_path / "cut.wav", keep=0.5)
    assert len(sf.read(cut)[0]) == 26400  # what libsndfile alone makes of it: a complete 1.65-s clip
    with pytest.raises(ExtractionError) as error:
        load_audio(cut)
    assert str(error.value) == f"{cut}: truncated: header says 52800 frames, file holds 26400"
    assert len(load_audio(cut, start_s=0.1, end_s=1.0)[0]) == 14400  # a segment the file holds is fine


@pytest.mark.parametrize("variant", ["8k-stereo", "44.1k", "96k-24bit", "5.1"])
@pytest.mark.parametrize("extractor", ["mfcc", "egemaps"])
def test_same_signal_at_any_rate_and_channels_gives_the_same_features(tmp_path, variant, extractor):
    """Each extractor reads at its declared rate and channels. Tolerances: MFCC within 5 % (relative
    Frobenius norm; the first and last two frames see the resampler's edges) and 0.1 elsewhere; eGeMAPS
    within 1 % (relative norm) with every value within 5 % (+1e-3)."""
    from emocli.features.audio.opensmile import OpenSmileExtractor

    signal = speech_like(3.3)
    reference = write_wav(tmp_path / "reference.wav", signal)
    rate, channels, subtype = {
        "8k-stereo": (8000, 2, "PCM_16"), "44.1k": (44100, 1, "PCM_16"), "96k-24bit": (96000, 1, "PCM_24"),
        "5.1": (16000, 6, "PCM_16"),
    }[variant]  # fmt: skip
    copy = resampled(signal, RATE, rate)
    other = write_wav(tmp_path / f"{variant}.wav", np.stack([copy] * channels) if channels > 1 else copy, rate, subtype)
    build = MfccExtractor if extractor == "mfcc" else lambda: OpenSmileExtractor(feature_set="eGeMAPSv02")
    ours, theirs = (build().extract({"sample_id": "x", "audio_path": str(p)}).values for p in (reference, other))
    assert ours.shape == theirs.shape
    relative = np.linalg.norm(ours - theirs) / np.linalg.norm(ours)
    if extractor == "mfcc":
        assert ours.shape == (104, 13) and relative < 0.05
        np.testing.assert_allclose(theirs[2:-2], ours[2:-2], atol=0.1)
    else:
        assert relative < 0.01
        np.testing.assert_allclose(theirs, ours, rtol=0.05, atol=1e-3)


def test_mfcc_needs_a_declared_rate():
    assert MfccExtractor().params.sample_rate == 16000
    with pytest.raises(ConfigError, match="sample_rate: .*give a rate"):
        MfccExtractor(sample_rate=None)


def _case(path, ok=None, error=None, table=None):
    return {"path": path, "ok": ok, "error": error, **(table or {})}


@pytest.fixture(scope="module")
def media_corpus(tmp_path_factory):
    """Hostile audio files, extracted with MFCC into one store: sample_id -> (case, features or failure)."""
    root = tmp_path_factory.mktemp("media")
    signal = speech_like(1.0)
    good = write_wav(root / "good.wav", signal)
    cases = {
        "empty": _case(root / "empty.wav", error="file is empty"),
        "garbage": _case(write_garbage(root / "garbage.wav"), error="cannot decode audio"),
        "text-as-wav": _case(root / "text.wav", error="cannot decode audio"),
        "truncated-wav": _case(cut_data(good, root / "cut.wav"), error="truncated: header says 16000 frames, file holds 8000"),
        "truncated-aiff": _case(cut_data(write_wav(root / "a.aiff", signal, fmt="AIFF"), root / "cut.aiff"), error="truncated: header says 16000 frames"),
        "truncated-m4a": _case(truncate(write_faststart_m4a(root / "fs.m4a", speech_like(2.0)), root / "cut.m4a"), error="truncated: header says 32000 frames"),
        "zero-frames": _case(zero_frames(root / "zero.wav"), error="holds no audio samples"),
        "huge-rate": _case(with_sample_rate(good, root / "huge.wav", 2**31 - 1), error="implausible sample rate 2147483647 Hz"),
        "video-without-audio": _case(write_video(root / "silent_film.mp4", seconds=0.5), error="has no audio stream"),
        "corrupt-mp4-header": _case(root / "corrupt.mp4", error="cannot decode audio"),
        "truncated-mp4": _case(truncate(write_video(root / "v.mp4", seconds=1.0, audio="tone"), root / "cut.mp4"), error="cannot decode audio"),
        "directory": _case(root / "folder.wav", error="not a file"),
        "dangling-symlink": _case(root / "dangling.wav", error=f"is a symbolic link to {root / 'nowhere.wav'}, which does not exist"),
        "segment-past-the-end": _case(good, error="holds no audio samples", table={"start_s": 5.0, "end_s": 6.0}),
        "flac-named-wav": _case(write_wav(root / "flac.wav", signal, subtype="PCM_16", fmt="FLAC"), ok="reference"),
        "aac-named-wav": _case(write_audio_only(root / "aac.wav", seconds=1.0), ok="any"),
        "symlink": _case(root / "link.wav", ok="reference"),
        "stereo": _case(write_wav(root / "stereo.wav", np.stack([signal, signal])), ok="reference"),
        "5.1": _case(write_wav(root / "surround.wav", np.stack([signal] * 6)), ok="reference"),
        "float-32": _case(write_wav(root / "float.wav", signal, subtype="FLOAT"), ok="reference"),
        "silence": _case(write_wav(root / "silence.wav", np.zeros(RATE, np.float32)), ok="any"),
        "one-sample": _case(write_wav(root / "one.wav", signal[:1]), ok="any"),
    }
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("hello, I am not audio\n")
    corrupt = bytearray(write_video(root / "to_corrupt.mp4", seconds=0.5, audio="tone").read_bytes())
    corrupt[:64] = np.random.default_rng(0).bytes(64)  # the same damage every run: its outcome is fixed
    (root / "corrupt.mp4").write_bytes(bytes(corrupt))
    (root / "folder.wav").mkdir()
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")
    (root / "link.wav").symlink_to(good)
    rows = [{"sample_id": "reference", "audio_path": str(good), "label": "x"}]
    rows += [{"sample_id": name, "audio_path": str(c["path"]), "label": "x", "start_s": c.get("start_s"),
              "end_s": c.get("end_s")} for name, c in cases.items()]  # fmt: skip
    sample_set = SampleSet("hostile", root, pd.DataFrame(rows), LabelMap(("x",)))
    store = FeatureStore(root / "store")
    store.extract(sample_set, [MfccExtractor()], workers=0, progress=False)
    name = MfccExtractor().feature_set_name
    features, failures = store.read_features(name), store.failures(name).set_index("sample_id")
    return cases, features, failures


MEDIA_CASES = [
    "empty", "garbage", "text-as-wav", "truncated-wav", "truncated-aiff", "truncated-m4a", "zero-frames", "huge-rate",
    "video-without-audio", "corrupt-mp4-header", "truncated-mp4", "directory", "dangling-symlink",
    "segment-past-the-end", "flac-named-wav", "aac-named-wav", "symlink", "stereo", "5.1", "float-32", "silence",
    "one-sample",
]  # fmt: skip


@pytest.mark.parametrize("case", MEDIA_CASES)
def test_hostile_audio(media_corpus, case):
    cases, features, failures = media_corpus
    expected = cases[case]
    if expected["error"] is not None:
        assert case not in features and case in failures.index
        failure = failures.loc[case]
        assert expected["error"] in failure["message"], failure["message"]
        assert failure["path"] == str(expected["path"]) and "\n" not in failure["message"]
        return
    assert case in features and case not in failures.index
    values = features[case].values
    assert np.isfinite(values).all() and values.shape[1] == 13
    if expected["ok"] == "reference":
        np.testing.assert_allclose(values, features["reference"].values, atol=0.05 * np.abs(features["reference"].values).max())


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda root: write_audio_only(root / "audio.m4a"), "has no video stream"),
        (lambda root: write_garbage(root / "garbage.mp4"), "cannot decode video"),
        (lambda root: (root / "empty.mp4").write_bytes(b"") or root / "empty.mp4", "cannot decode video"),
        (lambda root: truncate(write_video(root / "v.mp4", seconds=1.0), root / "cut.mp4", keep=0.3), "cannot decode video"),
        (lambda root: root / "missing.mp4", "video file not found"),
    ],
    ids=["audio-without-video", "garbage-video", "empty-video", "truncated-video", "missing-video"],
)
def test_hostile_video(tmp_path, make, problem):
    from emocli.features.visual.video import read_frames

    path = make(tmp_path)
    with pytest.raises(ExtractionError) as error:
        read_frames(path, n_frames=4)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value)


# ------------------------------------------------------------------------------------------- manifests


@pytest.fixture
def clips(tmp_path) -> Path:
    folder = tmp_path / "data" / "clips"
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        write_wav(folder / f"{name}.wav", speech_like(0.2))
    return folder.parent


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "content, problem",
    [
        ("audio,label\nclips/a.wav,happy\nclips/nope.wav,sad\n", r"row 2: audio file not found: clips/nope.wav"),
        ("sample_id,audio,label\nx,clips/a.wav,happy\nx,clips/b.wav,sad\n", r"row 2: duplicate sample_id 'x' \(also row 1\)"),
        ("audio,label,labels\nclips/a.wav,happy,happy\n", "both label and labels columns"),
        ("audio,label\nclips/a.wav,caf\xe9\n".encode("latin-1"), r"not UTF-8: byte 0xe9 at byte offset 27 \(line 2\)"),
        ("audio,label\nclips/a.wav,happy\n".encode("utf-16"), "UTF-16 text"),
        ("audio,label\n", "no rows"),
        ("", r"empty \(no header\)"),
        ("audio,label\nclips/a.wav,happy,extra\n", "3 fields but the header has 2"),
        ("audio,label,start_s\nclips/a.wav,happy,nan\n", "start_s 'nan' is not a finite number"),
        ("audio,label\nclips/a.wav,   \n", "row 1: empty label"),
        ("audio,label\nclips,happy\n", "audio file not found"),  # a folder is not a media file
    ],
    ids=["missing-media", "duplicate-ids", "mixed-label-columns", "latin-1", "utf-16", "header-only", "empty-file",
         "too-many-fields", "nan-start", "blank-label", "folder-as-media"],
)
def test_hostile_manifests(clips, content, problem):
    path = _write(clips / "manifest.csv", content)
    with pytest.raises(DatasetError, match=problem) as error:
        ManifestAdapter().load(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_hostile_jsonl_lists_every_bad_line(clips):
    path = _write(clips / "m.jsonl", '{"audio": "clips/a.wav", "label": "happy"}\n[1, 2]\n{"audio": oops}\n')
    with pytest.raises(DatasetError, match=r"2 problems: row 2 \(line 2\): expected a JSON object, got list; "
                       r"row 3 \(line 3\): malformed JSON"):  # fmt: skip
        ManifestAdapter().load(path)


def test_manifest_bom_crlf_absolute_relative_and_symlinked_paths_agree(clips, tmp_path):
    absolute = clips / "clips" / "b.wav"
    text = f"\ufeffaudio,label\r\nclips/a.wav,happy\r\n{absolute},sad\r\n./clips/../clips/a.wav,sad\r\n"
    path = _write(clips / "m.csv", text.replace("./clips/../clips/a.wav,sad\r\n", ""))
    samples = ManifestAdapter().load(path)
    assert list(samples.table["audio_path"]) == [str(clips / "clips" / "a.wav"), str(absolute)]
    assert samples.labels.names == ("happy", "sad")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link.csv").symlink_to(path)  # relative paths follow the file the link points to
    linked = ManifestAdapter().load(elsewhere / "link.csv")
    assert list(linked.table["audio_path"]) == list(samples.table["audio_path"])

    (clips / "clips" / "c.wav").symlink_to(absolute)  # a symlinked clip keeps its own name as sample_id
    extra = _write(clips / "n.csv", "audio,label\nclips/c.wav,happy\n")
    assert list(ManifestAdapter().load(extra).table["sample_id"]) == ["c"]


def test_labels_differing_in_case_and_spaces_are_one_class(clips):
    path = _write(clips / "m.csv", "audio,label\nclips/a.wav,HAPPY \nclips/b.wav,happy\n")
    samples = ManifestAdapter().load(path)
    assert samples.labels.names == ("HAPPY",) and list(samples.table["label"]) == ["HAPPY", "HAPPY"]
    assert any("'HAPPY', 'happy' are one class" in note for note in samples.notes)
    named = ManifestAdapter(label_names=["Happy", "sad"]).load(path)
    assert named.labels.names == ("Happy", "sad") and set(named.table["label"]) == {"Happy"}
    multi = _write(clips / "n.csv", "audio,labels\nclips/a.wav,Sad;sad ;HAPPY\n")
    assert list(ManifestAdapter().load(multi).table["labels"].iloc[0]) == ["Sad", "HAPPY"]
    with pytest.raises(DatasetError, match="lists 'Happy' and 'happy', one class"):
        ManifestAdapter(label_names=["Happy", "happy"]).load(path)


# ------------------------------------------------------------------------------------------- the CLI


def run_emo(args: list[str], capsys) -> tuple[int, str]:
    """`emo ARGS` as the installed script runs it: (exit code, stderr)."""
    from emocli import cli

    old = sys.argv
    sys.argv = ["emo", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def test_bad_adapter_option_is_one_line(tmp_path, capsys):
    code, err = run_emo(["extract", "--dataset", "ravdess", "--root", str(tmp_path), "--option", "channel=song",
                         "--out", str(tmp_path / "s")], capsys)  # fmt: skip  (checked before any download)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == ("error: dataset ravdess: unknown option 'channel' (did you mean 'vocal_channel'?) "
                           "(its options: vocal_channel)")  # fmt: skip
    code, err = run_emo(["extract", "--dataset", "ravdess", "--root", str(tmp_path), "--option", "vocal_channel=sing",
                         "--no-download", "--out", str(tmp_path / "s")], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "option vocal_channel='sing': Input should be 'speech', 'song' or 'both'" in err


def test_failed_hub_download_is_one_line_saying_how_to_work_offline(monkeypatch, tmp_path):
    import urllib.error

    import torch

    from emocli.features.visual.frames import load_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as error:
        load_backbone("resnet18", "DEFAULT")
    message = str(error.value)
    assert "cannot download the resnet18 weights IMAGENET1K_V1 from https://download.pytorch.org/" in message
    assert "Temporary failure in name resolution" in message and str(tmp_path) in message
    assert "weights=<a local .pth or .safetensors file>" in message and "\n" not in message


# ------------------------------------------------------------------------------------------- stores


def _sample_set(root: Path, n: int, first: int = 0, dataset: str = "fake", label=None) -> SampleSet:
    """Samples s{first}..s{first+n-1} of make_sample_set's clips (another 'manifest' of the same dataset)."""
    whole = make_sample_set(root, n=first + n, dataset=dataset)
    table = whole.table.iloc[first:].reset_index(drop=True)
    if label is not None:
        table["label"] = label
    return SampleSet(dataset, root, table, LabelMap(tuple(sorted(set(table["label"])))))


def test_a_second_sample_set_adds_to_the_index(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.extract(_sample_set(tmp_path / "media", 40), [NpyMean()], workers=0, progress=False)
    report = store.extract(_sample_set(tmp_path / "media", 5, first=40, label="angry"), [NpyMean()], workers=0,
                           progress=False)  # fmt: skip
    assert report.feature_sets[0].extracted == 5
    samples = store.samples()
    assert len(samples) == 45 and list(samples["sample_id"]) == [f"s{i:03d}" for i in range(45)]
    assert store.dataset()["labels"]["names"] == ["happy", "sad", "angry"]  # earlier classes keep their index
    assert store.dataset()["n_samples"] == 45
    additions = store.additions()
    assert [a["n_added"] for a in additions] == [40, 5] and additions[1]["sample_ids"][0] == "s040"
    assert additions[1]["dataset"]["n_samples"] == 5
    assert store.read(NpyMean().feature_set_name).num_rows == 45

    before = (tmp_path / "store" / "samples.parquet").read_bytes()
    overlapping = _sample_set(tmp_path / "media", 10, first=35, label="angry")  # s035..s039 are happy/sad there
    with pytest.raises(ConfigError) as error:
        store.extract(overlapping, [NpyMean()], workers=0, progress=False)
    message = str(error.value)
    assert message.startswith(f"{store.path}: 5 samples are in this store's index with other values: ")
    assert "s035 (label: 'sad' in the store, 'angry' now)" in message and "s039" in message
    assert (tmp_path / "store" / "samples.parquet").read_bytes() == before


def test_another_dataset_or_task_is_refused(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.extract(_sample_set(tmp_path / "media", 4), [NpyMean()], workers=0, progress=False)
    with pytest.raises(ConfigError, match="holds dataset 'fake', not 'other'"):
        store.extract(_sample_set(tmp_path / "media", 4, dataset="other"), [NpyMean()], workers=0, progress=False)
    multi = _sample_set(tmp_path / "media", 2, first=4)
    multi.labels = LabelMap(("happy", "sad"), task="multi_label")
    with pytest.raises(ConfigError, match="single_label, the new ones multi_label"):
        store.extract(multi, [NpyMean()], workers=0, progress=False)


@pytest.fixture
def stored(tmp_path):
    """A store of 12 samples with a vector and a sequence feature set; (store, sample set, vector name)."""
    data = make_sample_set(tmp_path / "media")
    store = FeatureStore(tmp_path / "store")
    store.extract(data, [NpyMean(), NpyFrames()], workers=0, progress=False)
    return store, data, NpyMean().feature_set_name


def _only_part(store: FeatureStore, name: str) -> Path:
    (part,) = (store.path / name / "parts").glob("*.parquet")
    return part


def test_deleted_part_reads_as_missing_rows_and_is_redone_identically(stored):
    store, data, name = stored
    reference = store.read(name)
    _only_part(store, name).unlink()
    assert store.read(name).num_rows == 0 and store.info(name).n_rows == 0
    report = store.extract(data, [NpyMean()], workers=0, progress=False).feature_sets[0]
    assert report.extracted == 12
    assert store.read(name).select(["sample_id", "input_fingerprint", "values"]).equals(
        reference.select(["sample_id", "input_fingerprint", "values"])
    )


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda part: part.write_bytes(os.urandom(2000)), "unreadable Parquet file"),
        (lambda part: part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2]), "unreadable Parquet file"),
        (lambda part: part.write_bytes(b""), "unreadable Parquet file"),
    ],
    ids=["garbage-part", "truncated-part", "empty-part"],
)
def test_damaged_part_is_named(stored, damage, problem):
    store, data, name = stored
    part = _only_part(store, name)
    damage(part)
    for read in (lambda: store.read(name), lambda: store.info(name), lambda: store.extract(data, [NpyMean()], workers=0, progress=False)):
        with pytest.raises(EmoError) as error:
            read()
        assert str(error.value).startswith(f"{part}: {problem}") and "emo extract" in str(error.value)


def test_foreign_part_with_other_columns_is_named(stored):
    store, _, name = stored
    foreign = store.path / name / "parts" / "zzz-notes.parquet"
    pq.write_table(pa.table({"sample_id": ["s000"], "input_fingerprint": ["x"], "values": [[1.0, 2.0]]}), foreign)
    with pytest.raises(EmoError, match="not a part of this feature set") as error:
        store.read(name)
    assert str(error.value).startswith(str(foreign))


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda spec: "{ not json", "unreadable feature set spec"),
        (lambda spec: json.dumps({**spec, "extractor": {**spec["extractor"], "dim": 4}}), "says kind 'vector', dim 4 where the feature set's parts hold vectors of dim 3"),
        (lambda spec: json.dumps({**spec, "extractor": {**spec["extractor"], "kind": "sequence"}}), "does not describe the feature set"),
        (lambda spec: json.dumps({k: v for k, v in spec.items() if k != "extractor"}), "unreadable feature set spec (KeyError"),
    ],
    ids=["spec-not-json", "spec-dim-edited", "spec-kind-edited", "spec-without-extractor"],
)
def test_edited_spec_is_named(stored, edit, problem):
    store, _, name = stored
    spec_path = store.path / name / "spec.json"
    spec_path.write_text(edit(json.loads(spec_path.read_text())))
    with pytest.raises(EmoError) as error:
        store.read(name)
    assert str(error.value).startswith(f"{spec_path}: {problem}")


def test_edited_provenance_that_changes_nothing_is_accepted(stored):
    store, _, name = stored
    spec_path = store.path / name / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**spec, "created": "yesterday", "note": "checked by hand"}))
    assert store.read(name).num_rows == 12


def test_foreign_files_are_ignored(stored):
    store, data, name = stored
    before = {info.name: store.read(info.name) for info in store.feature_sets()}
    (store.path / "README.txt").write_text("my notes")
    (store.path / "scratch").mkdir()
    (store.path / "scratch" / "data.parquet").write_bytes(b"not ours")
    (store.path / name / "parts" / ".DS_Store").write_bytes(b"\0\1")
    (store.path / name / "parts" / "notes.txt").write_text("x")
    assert [info.name for info in store.feature_sets()] == sorted(before)
    assert all(store.read(n).equals(t) for n, t in before.items())
    again = store.extract(data, [NpyMean(), NpyFrames()], workers=0, progress=False)
    assert [r.cached for r in again.feature_sets] == [12, 12]


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda path: path.unlink(), "not a feature store (no samples.parquet)"),
        (lambda path: path.write_bytes(os.urandom(500)), "unreadable Parquet file"),
    ],
    ids=["samples-deleted", "samples-corrupted"],
)
def test_damaged_sample_index_is_named(stored, damage, problem):
    store, _, _ = stored
    damage(store.path / "samples.parquet")
    with pytest.raises(EmoError) as error:
        store.samples()
    assert str(error.value).startswith(str(store.path)) and problem in str(error.value)


def test_leftover_temporary_files_are_never_read_and_removed_by_the_next_writer(stored):
    store, data, name = stored
    before = store.read(name)
    leftovers = [store.path / ".samples.parquet.99999.tmp", store.path / name / ".spec.json.99999.tmp",
                 store.path / name / "parts" / ".00000000000000000001-0099999-000000.parquet.99999.tmp"]  # fmt: skip
    for leftover in leftovers:
        leftover.write_bytes(b"half a file")
    assert store.read(name).equals(before) and len(store.samples()) == 12
    store.extract(data, [NpyMean()], workers=0, progress=False)
    assert not any(path.exists() for path in leftovers)


def _poison(store: FeatureStore, name: str, sample_ids: list[str]) -> None:
    """Append a part whose rows hold NaN/inf for `sample_ids`, as a hand-edited or foreign store might."""
    table = store.read(name)
    keep = pa.array([s in sample_ids for s in table.column("sample_id").to_pylist()])
    rows = table.filter(keep)
    dim = rows.schema.field("values").type.list_size
    values = np.full((rows.num_rows, dim), np.nan, np.float32)
    values[:, 0] = np.inf
    rows = rows.set_column(2, "values", pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim))
    pq.write_table(rows, store.path / name / "parts" / "99999999999999999999-0000001-000000.parquet")


def test_nan_in_a_store_is_refused_by_training_data_and_by_merge(stored, tmp_path):
    store, _, name = stored
    _poison(store, name, ["s003", "s007"])
    assert nonfinite_samples(store.read(name)) == ["s003", "s007"]
    spec = InputSpec.from_info(store.info(name))
    with pytest.raises(ConfigError) as error:
        load_data(store, {"audio": spec}, LabelMap(("happy", "sad")))
    assert str(error.value) == (
        f"{store.path}: feature set {name} holds NaN or infinite values for 2 samples (s003, s007); extract them "
        "again (emo extract checks every value) or leave that feature set out"
    )
    target = FeatureStore(tmp_path / "merged")
    with pytest.raises(EmoError, match=f"feature set {name} holds NaN or infinite values for 2 samples .s003, s007."):
        target.merge([store])
    assert not (tmp_path / "merged" / name).exists()  # checked before anything was copied


def test_nan_outputs_fail_their_sample_or_are_zeroed_when_asked(tmp_path):
    class Holey(NpyMean):
        name = "holey"

        def extract(self, sample):
            values = super().extract(sample).values
            if sample["sample_id"] in ("s001", "s004"):
                values[1] = np.nan if sample["sample_id"] == "s001" else -np.inf
            return Features(values)

    data = make_sample_set(tmp_path / "media")
    store = FeatureStore(tmp_path / "store")
    failing, zeroing = Holey(), Holey(nonfinite="zero")
    assert failing.feature_set_name != zeroing.feature_set_name and "nonfinite" not in failing.spec()["params"]
    report = store.extract(data, [failing, zeroing], workers=0, progress=False)
    assert [(r.extracted, r.failed) for r in report.feature_sets] == [(10, 2), (12, 0)]
    failures = store.failures(failing.feature_set_name)
    assert list(failures["sample_id"]) == ["s001", "s004"]
    assert failures["message"][0] == "1 of 3 feature values are NaN or infinite (the extractor's parameter nonfinite=zero stores them as 0)"
    zeroed = store.read_features(zeroing.feature_set_name)
    assert zeroed["s001"].values[1] == 0 and zeroed["s004"].values[1] == 0
    assert zeroing.spec()["params"]["nonfinite"] == "zero"


def test_a_second_writer_waits_for_the_lock_and_says_so(stored):
    from filelock import FileLock

    store, _, name = stored
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import NpyMean, make_sample_set
        from emocli.features.store import FeatureStore
        data = make_sample_set(__import__("pathlib").Path({str(store.path.parent / "media")!r}))
        print(FeatureStore({str(store.path)!r}).extract(data, [NpyMean(scale=3.0)], workers=0, progress=False).summary())
    """)
    lock = FileLock(store.path / ".writer.lock")
    with lock:
        waiting = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        line = ""
        while "waiting" not in line and time.monotonic() < deadline and waiting.poll() is None:
            line = waiting.stderr.readline()
        assert f"{store.path}: another process is writing to this store" in line and "waiting for it to finish" in line
        assert waiting.poll() is None  # still waiting while the lock is held
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "12 extracted" in out and store.read(NpyMean(scale=3.0).feature_set_name).num_rows == 12


def test_merge_adds_other_stores_samples_and_refuses_conflicts(tmp_path):
    first, second, third = (FeatureStore(tmp_path / name) for name in ("first", "second", "third"))
    first.extract(_sample_set(tmp_path / "media", 6), [NpyMean()], workers=0, progress=False)
    second.extract(_sample_set(tmp_path / "media", 4, first=6, label="angry"), [NpyMean()], workers=0, progress=False)
    first.merge([second])
    assert list(first.samples()["sample_id"]) == [f"s{i:03d}" for i in range(10)]
    assert [a["n_added"] for a in first.additions()] == [6, 4] and first.read(NpyMean().feature_set_name).num_rows == 10

    third.extract(_sample_set(tmp_path / "media", 2, first=5, label="angry"), [NpyMean()], workers=0, progress=False)
    with pytest.raises(ConfigError, match=r"1 samples are in this store's index with other values: s005 \(label: 'sad'"):
        first.merge([third])


def test_datasets_command_shows_what_allow_pickle_means():
    from typer.testing import CliRunner

    from emocli.cli import app

    result = CliRunner().invoke(app, ["datasets", "nemu"])
    assert result.exit_code == 0
    assert "option allow_pickle (default False): true: unpickle the data file fully" in result.output
    assert "Unpickling runs any code the file names" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "tensors, problem",
    [
        ({"audio.mean": np.zeros(3, np.float32), "audio.scale": np.array([1, np.nan, 1], np.float32)}, "NaN, infinite"),
        ({"audio.mean": np.zeros(3, np.float32), "audio.scale": np.array([1, 0, 1], np.float32)}, "non-positive"),
        ({"audio.mean": np.zeros(3, np.float32), "audio.scale": np.ones(4, np.float32)}, "same length"),
        ({"audio.mean": np.zeros(3, np.float32)}, "no 'audio.scale'"),
    ],
    ids=["nan-scale", "zero-scale", "lengths-differ", "no-scale"],
)
def test_damaged_standardisation_is_named(tmp_path, tensors, problem):
    from safetensors.numpy import save_file

    from emocli.data.normalize import Standardizer

    path = tmp_path / "normalization.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(EmoError, match=problem) as error:
        Standardizer.load(path)
    assert str(error.value).startswith(f"{path}: ")
