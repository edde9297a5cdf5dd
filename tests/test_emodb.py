"""Berlin EmoDB: the adapter on generated files named as the release names them, its download (a host that
publishes no size or checksum: the unpacked content is checked), and the real corpus where it is on disk
($EMO_EMODB_ROOT)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_download import FAST, Server
from typer.testing import CliRunner

from emocli.cli import app
from emocli.core.errors import DatasetError
from emocli.datasets import load_dataset
from emocli.datasets.base import RemoteFile
from emocli.datasets.download import ensure_available
from emocli.datasets.emodb import EMOTION_CODES, RELEASE_COUNTS, SPEAKERS, EmodbAdapter
from emocli.datasets.home import locate_dataset

runner = CliRunner()
LETTER = {label: letter for letter, label in EMOTION_CODES.items()}


def release_names() -> list[str]:
    """535 names with the release's per-emotion counts, spread over the ten speakers and texts."""
    texts = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
    names = []
    for label, count in RELEASE_COUNTS.items():
        for i in range(count):
            speaker, text, version = list(SPEAKERS)[i % 10], texts[(i // 10) % 10], "abcdefgh"[i // 100]
            names.append(f"{speaker}{text}{LETTER[label]}{version}")
    return names


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(160, dtype=np.float32), 16000, format="WAV")
    return buffer.getvalue()


def write_corpus(folder: Path, names: list[str]) -> Path:
    (folder / "wav").mkdir(parents=True)
    body = wav_bytes()
    for name in names:
        (folder / "wav" / f"{name}.wav").write_bytes(body)
    return folder


def test_names_give_speaker_text_emotion_and_speaker_folds(tmp_path):
    root = write_corpus(tmp_path / "emodb", ["03a01Fa", "08b10Wc", "16a05Lb", "15b03Nd"])
    table = load_dataset("emodb", root).table.set_index("sample_id")
    assert table.loc["03a01Fa", "label"] == "happy" and table.loc["08b10Wc", "label"] == "angry"
    assert table.loc["03a01Fa", "text"] == "Der Lappen liegt auf dem Eisschrank."
    assert table.loc["03a01Fa", "fold"] == table.loc["08b10Wc", "fold"] == 0  # speakers 03 and 08 share a fold
    assert table.loc["16a05Lb", "split"] == table.loc["15b03Nd", "split"] == "test"
    assert set(table["language"]) == {"de"} and table.loc["16a05Lb", "gender"] == "female"
    without = load_dataset("emodb", root, include_boredom=False)
    assert "16a05Lb" not in set(without.table["sample_id"]) and "bored" not in without.labels.names


def test_a_foreign_file_name_is_one_error_naming_the_file(tmp_path):
    root = write_corpus(tmp_path / "emodb", ["03a01Fa", "03a01Xa"])
    with pytest.raises(DatasetError, match="unknown EmoDB emotion letter 'X'") as error:
        load_dataset("emodb", root)
    assert error.value.path.name == "03a01Xa.wav"


def test_a_partial_copy_is_read_with_a_note(tmp_path):
    root = write_corpus(tmp_path / "emodb", release_names()[:100])
    assert any("not the release's 535 utterances" in note for note in load_dataset("emodb", root).notes)


def zipped(names: list[str]) -> bytes:
    buffer, body = io.BytesIO(), wav_bytes()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(f"wav/{name}.wav", body)
        archive.writestr("lablaut/readme.txt", "labels")
    return buffer.getvalue()


@pytest.fixture
def server(monkeypatch, tmp_path):
    served = Server()
    monkeypatch.setenv("EMO_DATA", str(tmp_path / "home"))
    monkeypatch.delenv("EMO_EMODB_ROOT", raising=False)
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def serve_release(server: Server, monkeypatch, names: list[str]) -> None:
    """EmoDB's download served from 127.0.0.1 as its host serves it: no size or checksum declared."""
    served = server.serve("/download/download.zip", zipped(names), size=None, checksum=None)
    declared = EmodbAdapter.remote_files[0]
    monkeypatch.setattr(EmodbAdapter, "remote_files", (RemoteFile(**{**declared.model_dump(), "url": served.url}),))


def test_a_download_of_unpublished_size_is_checked_by_its_content(server, monkeypatch):
    serve_release(server, monkeypatch, release_names())
    folder = ensure_available(EmodbAdapter, locate_dataset("emodb"), **FAST)
    samples = load_dataset("emodb", folder)
    assert len(samples.table) == 535 and not samples.notes
    assert not (folder / "download.zip").exists()  # unpacked, then deleted


def test_a_download_missing_utterances_is_never_in_place(server, monkeypatch):
    serve_release(server, monkeypatch, release_names()[:-1])
    with pytest.raises(DatasetError, match="does not hold EmoDB's release"):
        ensure_available(EmodbAdapter, locate_dataset("emodb"), **FAST)
    folder = locate_dataset("emodb").path
    assert not (folder / "emodb").exists()  # the next run downloads again
    result = runner.invoke(app, ["datasets", "emodb", "--download"])  # `emo` prints the error in one line
    assert isinstance(result.exception, DatasetError) and "does not hold EmoDB's release" in str(result.exception)
    assert "size not published" in runner.invoke(app, ["datasets", "emodb"]).output


@pytest.fixture(scope="module")
def emodb_root() -> Path:
    root = os.environ.get("EMO_EMODB_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("EmoDB not available: set $EMO_EMODB_ROOT to a copy (docs/DATASETS.md)")
    return Path(root)


@pytest.mark.realdata
def test_the_real_corpus_reads_as_released(emodb_root):
    samples = load_dataset("emodb", emodb_root)
    assert samples.table["label"].value_counts().to_dict() == RELEASE_COUNTS
    assert samples.table.groupby("fold")["speaker"].nunique().tolist() == [2] * 5
