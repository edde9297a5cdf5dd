"""Faults during extraction: kill -9 at random points, a full disk, a read-only folder, a killed parent.

Each leaves a store that reads back as it was before the fault (nothing committed is lost, no temporary
file is left), gives one error line naming the file and the cause, and resumes to the same store an
uninterrupted run makes. Real processes are killed here, with small fake extractors (test_store.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_store import NpyFrames, NpyMean, make_sample_set

from emocli.core.errors import EmoError
from emocli.features.store import FeatureStore

N = 40
BROKEN = 7  # sample s007's file is not a numpy file: a failure that must survive every fault too


def _media(root: Path):
    data = make_sample_set(root, n=N)
    Path(data.table.loc[BROKEN, "audio_path"]).write_bytes(b"not a numpy file")
    return data


def _extractors():
    return [NpyMean(delay_s=0.01), NpyFrames()]


def snapshot(store: FeatureStore) -> dict:
    """Everything a reader sees: the sample index, each feature set's rows and failures."""
    samples = store.samples()
    seen = {"samples": samples[["sample_id", "label", "speaker", "text"]].to_json(), "sets": {}}
    for info in store.feature_sets():
        rows = store.read(info.name)
        columns = [c for c in ("sample_id", "input_fingerprint", "values", "times") if c in rows.column_names]
        failures = store.failures(info.name)[["sample_id", "input_fingerprint", "path", "error_type", "message"]]
        seen["sets"][info.name] = (rows.select(columns).to_pylist(), failures.to_json())
    return seen


def leftovers(store: FeatureStore) -> list[Path]:
    return sorted(store.path.rglob("*.tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("reference")
    data = _media(root / "media")
    store = FeatureStore(root / "store")
    store.extract(data, _extractors(), workers=0, progress=False)
    return snapshot(store)


KILLED = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store import NpyFrames, NpyMean, make_sample_set
from emocli.features.store import FeatureStore
data = make_sample_set(Path({media!r}), n={n})  # the files exist: nothing is rewritten
print("started", flush=True)
FeatureStore({store!r}).extract(data, [NpyMean(delay_s=0.01), NpyFrames()], workers=0, progress=False, commit_rows=3)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_point_then_rerun_gives_the_identical_store(tmp_path, reference, seed):
    media, store = tmp_path / "media", FeatureStore(tmp_path / "store")
    data = _media(media)  # the reference's media, byte for byte: same fingerprints need same mtimes
    script = KILLED.format(tests=str(Path(__file__).parent), media=str(media), store=str(store.path), n=N)
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    assert process.stdout.readline().strip() == "started"
    time.sleep(random.Random(seed).uniform(0.2, 1.7))  # the run takes about 1.7 s from here on this machine
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if (store.path / "samples.parquet").exists():
        snapshot(store)  # whatever the kill left reads back without error

    store.extract(data, _extractors(), workers=0, progress=False)
    assert leftovers(store) == []
    assert _same_as(snapshot(store), reference)
    for info in store.feature_sets():
        assert len(list((info.path / "parts").glob("*.parquet"))) <= 1  # compacted


def _same_as(ours: dict, theirs: dict) -> bool:
    """Snapshots of stores over copies of the same media: equal but for the media folder in the paths."""
    assert ours["samples"] == theirs["samples"] and ours["sets"].keys() == theirs["sets"].keys()
    for name, (rows, failures) in ours["sets"].items():
        their_rows, their_failures = theirs["sets"][name]
        assert [r["sample_id"] for r in rows] == [r["sample_id"] for r in their_rows]
        for mine, other in zip(rows, their_rows):
            np.testing.assert_array_equal(np.array(mine["values"]), np.array(other["values"]))
        assert [r.get("times") for r in rows] == [r.get("times") for r in their_rows]
        assert _ids(failures) == _ids(their_failures)
    return True


def _ids(failures_json: str) -> list:
    import json

    table = json.loads(failures_json)
    return sorted((table["sample_id"][k], table["error_type"][k]) for k in table["sample_id"])


# ------------------------------------------------------------------------------------------- full disk


def _failing_writes(monkeypatch, after: int) -> list[int]:
    """pyarrow's Parquet writes fail with ENOSPC after `after` successful ones, having written half a file."""
    real = pq.write_table
    calls = [0]

    def write_table(table, where, *args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    return calls


def test_full_disk_mid_run_is_one_line_and_loses_nothing(tmp_path, monkeypatch, reference):
    data = _media(tmp_path / "media")
    store = FeatureStore(tmp_path / "store")
    store.extract(data, [NpyMean(delay_s=0.01)], workers=0, progress=False, limit=10)  # committed before
    before = store.read(NpyMean(delay_s=0.01).feature_set_name)

    _failing_writes(monkeypatch, after=4)
    with pytest.raises(EmoError) as error:
        store.extract(data, _extractors(), workers=0, progress=False, commit_rows=3)
    message = str(error.value)
    assert message.startswith(str(store.path)) and ".parquet: cannot write: No space left on device (ENOSPC)" in message
    assert "\n" not in message and leftovers(store) == []
    after = store.read(NpyMean(delay_s=0.01).feature_set_name)
    assert set(before.column("sample_id").to_pylist()) <= set(after.column("sample_id").to_pylist())

    monkeypatch.undo()  # room again: the same command finishes the work
    store.extract(data, _extractors(), workers=0, progress=False)
    assert leftovers(store) == [] and _same_as(snapshot(store), reference)


def test_full_disk_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    from emocli import cli, datasets, features

    monkeypatch.setitem(datasets.ADAPTERS, "fake", "test_extract_cli:FakeAdapter")
    monkeypatch.setitem(features.EXTRACTORS, "npy-mean", "test_store:NpyMean")
    make_sample_set(tmp_path / "media")
    _failing_writes(monkeypatch, after=0)
    monkeypatch.setattr(sys, "argv", ["emo", "extract", "--dataset", "fake", "--root", str(tmp_path / "media"),
                                      "--audio", "npy-mean", "--out", str(tmp_path / "store"), "--quiet"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: {tmp_path / 'store' / 'samples.parquet'}: cannot write: No space left on device")


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_a_really_full_tmpfs(tmp_path, reference):
    """The same on a real 2 MB tmpfs, where mounting one is allowed (root); skipped elsewhere."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        data = _media(tmp_path / "media")
        store = FeatureStore(folder / "store")
        store.extract(data, [NpyMean(delay_s=0.01)], workers=0, progress=False)
        filler = folder / "filler"
        with open(filler, "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
        with pytest.raises(EmoError, match=r"cannot write: No space left on device \(ENOSPC\)"):
            store.extract(data, [NpyFrames()], workers=0, progress=False)
        assert leftovers(store) == [] and store.read(NpyMean(delay_s=0.01).feature_set_name).num_rows == N - 1
        filler.unlink()
        store.extract(data, _extractors(), workers=0, progress=False)
        assert _same_as(snapshot(store), reference)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# ------------------------------------------------------------------------------------------- read-only


@pytest.fixture
def read_only_store(tmp_path):
    """(store with one feature set, its sample set, freeze): freeze() makes the store's folder read-only,
    by a read-only remount for root (who ignores permissions), else by permissions."""
    folder = tmp_path / "ro"
    folder.mkdir()
    root = os.geteuid() == 0
    if root and not _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)):
        pytest.skip("root needs a read-only mount, which cannot be made here")
    data = _media(tmp_path / "media")
    store = FeatureStore(folder / "store")
    store.extract(data, [NpyMean(delay_s=0.01)], workers=0, progress=False)

    def freeze():
        if root:
            assert _mount("-o", "remount,ro", str(folder))
        else:
            for path in [store.path, *store.path.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)

    yield store, data, freeze
    if root:
        subprocess.run(["umount", str(folder)], check=False)
    else:
        for path in [store.path, *store.path.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_read_only_store_reads_and_refuses_writes_in_one_line(read_only_store):
    store, data, freeze = read_only_store
    name = NpyMean(delay_s=0.01).feature_set_name
    before = snapshot(store)
    freeze()
    assert snapshot(store) == before  # readers take no lock and write nothing
    with pytest.raises(EmoError) as error:
        store.extract(data, _extractors(), workers=0, progress=False)
    message = str(error.value)
    assert message.startswith(f"{store.path / '.writer.lock'}: cannot write: ")
    assert ("Read-only file system (EROFS)" in message) or ("Permission denied (EACCES)" in message)
    assert snapshot(store) == before and store.read(name).num_rows == N - 1


# ------------------------------------------------------------------------------------------- orphans


def _children() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return parents


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be collected


POOLED = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store import NpyMean, make_sample_set
from emocli.features.store import FeatureStore
if __name__ == "__main__":
    data = make_sample_set(Path({media!r}), n=40)
    FeatureStore({store!r}).extract(data, [NpyMean(delay_s=0.5)], workers=2, progress=False)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table from /proc")
def test_workers_and_resource_tracker_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(POOLED.format(tests=str(Path(__file__).parent), media=str(tmp_path / "media"),
                                                    store=str(tmp_path / "store"))))  # fmt: skip
    process = subprocess.Popen([sys.executable, str(script)])
    descendants: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        parents = _children()
        descendants = {pid for pid, parent in parents.items() if parent == process.pid}
        parts = list((tmp_path / "store").glob("*/parts/*.parquet"))
        if len(descendants) >= 3 and not parts:  # two workers and the resource tracker, mid-run
            break
        time.sleep(0.1)
    assert len(descendants) >= 3, "the run should have started its workers"
    process.kill()  # SIGKILL to the parent alone, as `kill -9 PID` of emo extract
    process.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in descendants if _alive(pid)]
    for pid in survivors:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert survivors == [], "processes outlived the killed extraction"
