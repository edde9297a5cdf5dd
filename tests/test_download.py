"""The data home and dataset downloads, against an HTTP server on 127.0.0.1 (never the real network):
resumed Range requests, dropped connections, wrong checksums and sizes, interrupted unpacks, the
licence-gated message, and `emo extract --dataset NAME` / `emo datasets` as a new user types them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emocli.cli import app
from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import Checksum, DatasetAdapter, DefaultExtractor, RemoteFile
from emocli.datasets.download import LOCK_NAME, ensure_available, fetch, install, staging_name
from emocli.datasets.home import USER_FOLDER, locate_dataset, root_variable
from emocli.datasets.iemocap import IemocapAdapter
from emocli.datasets.ravdess import RavdessAdapter
from emocli.features.store import FeatureStore

runner = CliRunner()
FAST = {"progress": False, "retry_wait": 0.0}


class Server:
    """Files served from memory with Range support; `drop_after[path] = n` cuts the next response to that
    path after n body bytes (the connection is shut, as a network failure would); `ignore_range` paths
    answer every request with the whole file (200)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                asked = self.headers.get("Range")
                server.requests.append((self.path, asked))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if asked and self.path not in server.ignore_range:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                if cut is None:
                    self.wfile.write(payload)
                    return
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, *, algorithm: str = "sha256", **declared) -> RemoteFile:
        """Serve `body` at `path`; the RemoteFile that declares it (its checksum unless overridden)."""
        self.files[path] = body
        fields = {
            "url": self.url + path,
            "name": path.rsplit("/", 1)[1],
            "size": len(body),
            "checksum": Checksum(algorithm=algorithm, value=hashlib.new(algorithm, body).hexdigest(), source="test"),
            **declared,
        }
        return RemoteFile(**fields)


@pytest.fixture
def server():
    served = Server()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


@pytest.fixture(autouse=True)
def private_data_home(tmp_path, monkeypatch):
    """Every test gets its own data home: nothing is read from or written to the user's."""
    monkeypatch.setenv("EMO_DATA", str(tmp_path / "home"))
    for name in ("meld", "iemocap", "served"):
        monkeypatch.delenv(root_variable(name), raising=False)


def entries(folder: Path) -> list[str]:
    """What a folder holds, less the download lock file."""
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)


def body_of(n: int) -> bytes:
    return bytes(range(256)) * (n // 256) + bytes(n % 256)


# ---------------------------------------------------------------------------------------- data home


def test_the_first_given_source_names_the_folder(tmp_path, monkeypatch):
    environ = {"EMO_DATA": str(tmp_path / "data"), "EMO_MELD_ROOT": str(tmp_path / "mine")}
    assert locate_dataset("meld", tmp_path / "cli", environ).path == tmp_path / "cli"
    from_variable = locate_dataset("meld", None, environ)
    assert (from_variable.path, from_variable.origin) == (tmp_path / "mine", "$EMO_MELD_ROOT")
    assert from_variable.describe() == "root from $EMO_MELD_ROOT (--root not given)"
    del environ["EMO_MELD_ROOT"]
    home = locate_dataset("meld", None, environ)
    assert (home.path, home.origin) == (tmp_path / "data" / "meld", "$EMO_DATA")
    assert home.describe() == "root from $EMO_DATA (--root not given, $EMO_MELD_ROOT not set)"
    user = locate_dataset("meld", None, {})
    assert user.origin == USER_FOLDER and user.path.parts[-2:] == ("datasets", "meld")
    assert "$EMO_DATA not set" in user.describe()
    assert root_variable("my-set") == "EMO_MY_SET_ROOT"


# ---------------------------------------------------------------------------------------- downloads


def test_a_dropped_download_resumes_with_a_range_request(server, tmp_path):
    body = body_of(300_000)
    remote = server.serve("/files/data.bin", body)
    server.drop_after["/files/data.bin"] = 100_000
    with pytest.raises(DatasetError) as stopped:
        fetch(remote, tmp_path, attempts=1, **FAST)
    part = tmp_path / "data.bin.part"
    assert "the connection dropped" in str(stopped.value) and "next run resumes" in str(stopped.value)
    kept = part.stat().st_size  # what arrived, less the chunk being read when the connection broke
    assert 0 < kept <= 100_000 and not (tmp_path / "data.bin").exists()

    path = fetch(remote, tmp_path, attempts=1, **FAST)
    assert server.requests[-1] == ("/files/data.bin", f"bytes={kept}-")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == remote.checksum.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_one_call_retries_and_resumes(server, tmp_path):
    remote = server.serve("/data.bin", body_of(300_000), algorithm="md5")  # Zenodo's kind of checksum
    server.drop_after["/data.bin"] = 200_000
    assert fetch(remote, tmp_path, attempts=3, **FAST).read_bytes() == body_of(300_000)
    (first, _), (second, asked) = server.requests
    assert first == second == "/data.bin" and asked.startswith("bytes=") and asked != "bytes=0-"


def test_a_server_ignoring_ranges_is_read_from_the_start(server, tmp_path):
    remote = server.serve("/data.bin", body_of(40_000))
    server.ignore_range.add("/data.bin")
    (tmp_path / "data.bin.part").write_bytes(b"\xff" * 10_000)  # would corrupt the file if appended to
    assert fetch(remote, tmp_path, **FAST).read_bytes() == body_of(40_000)


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(server, tmp_path):
    remote = server.serve("/data.bin", body_of(30_000))
    wrong = remote.model_copy(update={"checksum": Checksum(algorithm="sha256", value="0" * 64, source="test")})
    with pytest.raises(DatasetError, match="does not match 0000") as refused:
        fetch(wrong, tmp_path, **FAST)
    assert "discarded" in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a .part to resume from


def test_a_file_of_another_size_is_refused_before_it_is_downloaded(server, tmp_path):
    remote = server.serve("/data.bin", body_of(30_000), checksum=None, size=30_001)
    with pytest.raises(DatasetError, match="30000 bytes, 30001 declared"):
        fetch(remote, tmp_path, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_without_the_network_one_line_says_what_to_fetch_and_where(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = RemoteFile(url=f"http://127.0.0.1:{port}/train.csv", name="train.csv", size=10)
    with pytest.raises(DatasetError) as failed:
        fetch(remote, tmp_path / "meld", attempts=2, **FAST)
    message = str(failed.value)
    assert "\n" not in message and "no connection" in message
    assert f"{remote.url} -> {tmp_path / 'meld' / 'train.csv'} (10 bytes)" in message


def test_processes_sharing_a_folder_download_once(server, tmp_path):
    remote = server.serve("/data.bin", body_of(500_000))
    errors = []

    def shard():
        try:
            install([remote], tmp_path / "shared", **FAST)
        except Exception as error:  # reported below: a thread's exception is otherwise lost
            errors.append(error)

    shards = [threading.Thread(target=shard) for _ in range(3)]
    for thread in shards:
        thread.start()
    for thread in shards:
        thread.join()
    assert errors == [] and server.requests == [("/data.bin", None)]
    assert (tmp_path / "shared" / "data.bin").read_bytes() == body_of(500_000)


def clips_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for emotion in ("01", "03", "05"):
            archive.writestr(f"Actor_01/03-01-{emotion}-01-01-01-01.wav", b"RIFF")
    return buffer.getvalue()


def test_an_interrupted_unpack_leaves_no_usable_folder(server, tmp_path, monkeypatch):
    remote = server.serve("/clips.zip", clips_zip(), algorithm="md5", unpack="zip")
    folder = tmp_path / "ravdess"

    def killed_half_way(self, path, members=None, pwd=None):
        self.extract(self.namelist()[0], path)
        raise KeyboardInterrupt  # as a kill would: no cleanup code runs after this

    with monkeypatch.context() as patch:
        patch.setattr(zipfile.ZipFile, "extractall", killed_half_way)
        with pytest.raises(KeyboardInterrupt):
            install([remote], folder, **FAST)
    assert not (folder / "clips").exists() and (folder / staging_name("clips")).is_dir()
    with pytest.raises(DatasetError, match="no RAVDESS"):
        RavdessAdapter().load(folder)  # the half folder is hidden from the adapter

    install([remote], folder, **FAST)  # the verified archive is unpacked again, not downloaded again
    assert [r[0] for r in server.requests] == ["/clips.zip"]
    assert entries(folder) == ["clips"]
    assert len(RavdessAdapter().load(folder).table) == 3


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_tar_archives_inside_a_tar_are_unpacked_and_unsafe_members_refused(server, tmp_path):
    inner = tar_bytes({"train_splits/dia0_utt0.mp4": b"video"})
    remote = server.serve("/MELD.Raw.tar.gz", tar_bytes({"MELD.Raw/train.tar.gz": inner}), unpack="tar")
    install([remote], tmp_path, **FAST)
    unpacked = tmp_path / "MELD.Raw" / "MELD.Raw"
    assert (unpacked / "train_splits" / "dia0_utt0.mp4").read_bytes() == b"video"
    assert not (unpacked / "train.tar.gz").exists() and not (tmp_path / "MELD.Raw.tar.gz").exists()

    evil = server.serve("/evil.tar.gz", tar_bytes({"../outside.txt": b"x"}), unpack="tar")
    with pytest.raises(DatasetError, match="cannot unpack"):
        install([evil], tmp_path / "evil", **FAST)
    assert not (tmp_path / "outside.txt").exists() and entries(tmp_path / "evil") == []


def test_python_literals_become_json_and_code_is_never_run(server, tmp_path):
    folds = server.serve(
        "/folds.py", b"train = ['a', 'b']\nvalid = ['c']\n", unpack="python-literals-json", into="folds.json"
    )
    install([folds], tmp_path, **FAST)
    assert json.loads((tmp_path / "folds.json").read_text()) == {"train": ["a", "b"], "valid": ["c"]}
    assert entries(tmp_path) == ["folds.json"]

    marker = tmp_path / "ran"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n".encode()
    hostile = server.serve("/hostile.py", code, unpack="python-literals-json", into="hostile.json")
    with pytest.raises(DatasetError, match="only `name = literal`"):
        install([hostile], tmp_path, **FAST)
    assert not marker.exists() and not (tmp_path / "hostile.json").exists()


@pytest.mark.realdata
def test_the_declared_meld_and_mosei_files_are_the_real_ones(server, meld_root, mosei_root, tmp_path):
    """The sizes and checksums MELD and MOSEI declare match the real files (served here, the URLs
    pointed at the local server); the MOSEI folds arrive as the SDK's Python file, rebuilt byte for byte
    from the shared JSON, and come out as the JSON the adapter reads."""
    from emocli.datasets.meld import MeldAdapter
    from emocli.datasets.mosei import MoseiAdapter

    folds = json.loads((mosei_root / "cmu_mosei_std_folds.json").read_text())
    bodies = {
        "cmu_mosei_std_folds.py": "".join(f"{key}={ids!r}\n\n" for key, ids in folds.items()).encode(),
        "CMU_MOSEI_Labels.csv": (mosei_root / "CMU_MOSEI_Labels.csv").read_bytes(),
        **{f.name: (meld_root / f.name).read_bytes() for f in MeldAdapter.remote_files if not f.optional},
    }
    for adapter in (MeldAdapter, MoseiAdapter):
        declared = [f for f in adapter.remote_files if not f.optional]
        for f in declared:
            server.files[f"/{adapter.name}/{f.name}"] = bodies[f.name]
        local = [f.model_copy(update={"url": f"{server.url}/{adapter.name}/{f.name}"}) for f in declared]
        install(local, tmp_path / adapter.name, **FAST)
    assert (tmp_path / "mosei" / "cmu_mosei_std_folds.json").read_text() == json.dumps(folds)
    splits = MoseiAdapter().load(tmp_path / "mosei").table["split"].value_counts().to_dict()
    assert splits == {"train": 16327, "valid": 1871, "test": 4662}
    assert len(MeldAdapter().load(tmp_path / "meld").table) == 13708


# ------------------------------------------------------------------------------- ensure_available


class ServedAdapter(DatasetAdapter):
    """A public dataset whose two files are served by the test server: items.csv and notes.txt."""

    name = "served"
    summary = "a served test dataset"
    needs_on_disk = "items.csv"
    remote_files: tuple[RemoteFile, ...] = ()
    default_extraction = (DefaultExtractor(modality="text", preset="text-stats"),)

    def load(self, root: Path) -> SampleSet:
        table = pd.read_csv(root / "items.csv")
        return SampleSet("served", root, table, LabelMap(("happy", "sad")))


@pytest.fixture
def served(server, monkeypatch):
    from emocli import datasets, features

    rows = [f"s{i},{'word ' * (i + 1)},{('happy', 'sad')[i % 2]}\n" for i in range(6)]
    items = "sample_id,text,label\n" + "".join(rows)
    files = (server.serve("/items.csv", items.encode()), server.serve("/notes.txt", b"notes"))
    monkeypatch.setattr(ServedAdapter, "remote_files", files)
    monkeypatch.setitem(datasets.ADAPTERS, "served", "test_download:ServedAdapter")
    monkeypatch.setitem(features.EXTRACTORS, "text-stats", "test_store:TextStats")
    return server


def test_a_users_own_folder_is_read_as_it_is(served, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "items.csv").write_text("sample_id,text,label\n")
    (mine / "my_notes.md").write_text("mine")  # something no download puts there: not emo's to fill
    location = locate_dataset("served", mine)
    assert ensure_available(ServedAdapter, location, **FAST) == mine
    assert served.requests == [] and not (mine / "notes.txt").exists()


def test_a_half_downloaded_dataset_is_completed(served, tmp_path):
    folder = tmp_path / "home" / "served"
    folder.mkdir(parents=True)
    (folder / "items.csv").write_bytes(served.files["/items.csv"])
    ensure_available(ServedAdapter, locate_dataset("served"), **FAST)
    assert served.requests == [("/notes.txt", None)] and (folder / "notes.txt").read_bytes() == b"notes"


def test_a_missing_gated_dataset_says_where_to_request_it_and_where_to_put_it(tmp_path):
    with pytest.raises(DatasetError) as missing:
        ensure_available(IemocapAdapter, locate_dataset("iemocap"), **FAST)
    message = str(missing.value)
    assert "https://sail.usc.edu/iemocap/iemocap_release.htm" in message
    assert f"IEMOCAP_full_release/ (Session1..Session5) in {tmp_path / 'home' / 'iemocap'}" in message
    assert "root from $EMO_DATA" in message and "or set $EMO_IEMOCAP_ROOT" in message


# ------------------------------------------------------------------------------------------ the CLI


def test_extract_downloads_a_missing_dataset_and_uses_its_defaults(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused = runner.invoke(app, ["extract", "--dataset", "served", "--no-download", "--quiet"])
    assert isinstance(refused.exception, DatasetError)
    assert f"{served.url}/items.csv -> {tmp_path / 'home' / 'served' / 'items.csv'}" in str(refused.exception)
    assert served.requests == []

    result = runner.invoke(app, ["extract", "--dataset", "served", "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "downloading 2 files" in result.output and "default extraction: text text-stats" in result.output
    store = FeatureStore(tmp_path / "stores" / "served")
    (info,) = store.find(modality="text")
    assert info.extractor == "text-stats" and info.n_rows == 6
    again = runner.invoke(app, ["extract", "--dataset", "served", "--workers", "0", "--quiet"])
    assert "0 extracted, 6 cached" in again.output and len(served.requests) == 2  # nothing fetched twice


def test_extract_of_a_missing_gated_dataset_gives_the_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["extract", "--dataset", "iemocap"])
    assert isinstance(result.exception, DatasetError)
    assert "given out on request (https://sail.usc.edu/iemocap/iemocap_release.htm)" in str(result.exception)
    assert not (tmp_path / "stores").exists()


@pytest.mark.realdata
@pytest.mark.slow  # loading MiniLM: about 7 CPU-s
def test_extract_meld_as_written(meld_root, tmp_path, monkeypatch):
    """`emo extract --dataset meld`: the root from $EMO_MELD_ROOT, the default preset (MiniLM), the store
    in ./stores/meld."""
    copy = tmp_path / "meld-copy"
    copy.mkdir()
    for csv in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
        shutil.copy(meld_root / csv, copy / csv)
    monkeypatch.setenv("EMO_MELD_ROOT", str(copy))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["extract", "--dataset", "meld", "--limit", "100", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"meld: {copy} (root from $EMO_MELD_ROOT" in result.output
    store = FeatureStore(tmp_path / "stores" / "meld")
    (info,) = store.find(modality="text")
    assert (info.extractor, info.dim, info.n_rows) == ("hf-text", 384, 100)
    assert len(store.samples()) == 13708
    assert sorted(os.listdir(copy)) == ["dev_sent_emo.csv", "test_sent_emo.csv", "train_sent_emo.csv"]


def test_the_headline_commands_extract_meld_from_the_data_home_then_train_smile(meld_root, tmp_path, monkeypatch):
    """`emo extract --dataset meld` then `emo train smile`, as the README writes them, with the data home
    ($EMO_DATA) holding a copy of MELD's annotations, cut to the first 60 utterances of each split: the user's
    own copy (a file of theirs beside the CSVs), read as it is, with a word on each file that is not the
    published one (a copy cut short without such a file is refused: test_hostile_models.py)."""
    copy = tmp_path / "home" / "meld"
    copy.mkdir(parents=True)
    for csv in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
        pd.read_csv(meld_root / csv).head(60).to_csv(copy / csv, index=False)
    (copy / "NOTES.txt").write_text("the first 60 utterances of each split, for a quick test\n")
    monkeypatch.setenv("EMO_DATA", str(tmp_path / "home"))
    monkeypatch.delenv("EMO_MELD_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    extracted = runner.invoke(app, ["extract", "--dataset", "meld", "--quiet"])
    assert extracted.exit_code == 0, extracted.output
    assert "$EMO_DATA" in extracted.output
    said = " ".join(extracted.output.split())
    assert "train_sent_emo.csv is" in said and "where the published file has 1,119,290" in said
    assert "it is read as it is" in said and "60 utterances where the official file has 9,989" in said
    trained = runner.invoke(app, ["train", "smile", "--set", "epochs=2", "--set", "batch_size=16"])
    assert trained.exit_code == 0, trained.output
    assert "stores/meld (the one store under stores/ that smile can read)" in trained.output
    (results,) = (tmp_path / "runs").glob("smile-meld-*/results.json")
    assert json.loads(results.read_text())["summary"]["n"] == 1


def test_datasets_lists_licences_defaults_and_the_data_home(tmp_path):
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "CC BY-NC-SA 4.0: non-commercial use only, share alike, attribution" in flat
    assert "GPL-3.0: copyleft" in flat
    assert "meld MELD conversations" in flat and "default extraction: text minilm" in flat
    assert "default extraction: audio whisper-base, visual openface-au" in flat
    assert "on request: https://sail.usc.edu/iemocap/iemocap_release.htm" in flat
    assert f"data home: {tmp_path / 'home'} (from $EMO_DATA)" in flat

    detail = " ".join(runner.invoke(app, ["datasets", "ravdess"]).output.split())
    assert "md5 bc696df654c87fed845eb13823edef8a (the md5 Zenodo record 1188976 lists for the file)" in detail
    assert f"folder: {tmp_path / 'home' / 'ravdess'}" in detail and ": absent" in detail


def test_datasets_download_fetches_into_the_data_home(served, tmp_path):
    result = runner.invoke(app, ["datasets", "served", "--download", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "served" / "items.csv").exists() and "present" in result.output
