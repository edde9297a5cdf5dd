"""Extraction on a Ray cluster (`--executor ray`): a local cluster of 2 CPUs started inside the tests, whose
stores are compared with one-process extractions of the same samples; a Ray worker killed mid-job; a sample
that kills its worker every time; the option without Ray installed.

The fake extractors of test_store.py run on the cluster too: its workers find them through PYTHONPATH,
which the cluster fixture gives the tests folder (on a real cluster, plugins are installed on every node).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.progress import Progress
from test_store import NpyFrames, NpyMean, TextStats, make_sample_set
from typer.testing import CliRunner

from emocli.cli import app
from emocli.core.errors import ConfigError
from emocli.core.samples import PrecomputedFeatures, SampleSet
from emocli.core.types import Features
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.store import FeatureStore

TESTS = Path(__file__).resolve().parent
WORKER_TASK = "ray::extract_remote"  # the process title of a Ray worker running an extraction task


class SpeakerShare(Extractor):
    """A batched extractor whose `prepare` sees the whole table: each sample's share of its speaker's words
    in the whole dataset (the samples extracted are a slice of it)."""

    name = "speaker-share"
    modality = "text"
    kind = "vector"
    batch_size = 3

    class Params(ExtractorParams):
        pass

    @property
    def dim(self) -> int:
        return 1

    def prepare(self, samples):
        words = samples["text"].str.split().str.len()
        return samples.assign(speaker_words=words.groupby(samples["speaker"]).transform("sum"))

    def input_fingerprint(self, sample) -> str:
        return f"{sample['text']}|{sample['speaker_words']}"

    def extract_batch(self, samples):
        return [Features(np.array([len(s["text"].split()) / s["speaker_words"]], np.float32)) for s in samples]


class Versioned(NpyMean):
    """NpyMean whose library version is what $EMO_TEST_LIBRARY_VERSION says where it is built."""

    name = "versioned"

    def versions(self) -> dict[str, str]:
        return {"fake-library": os.environ.get("EMO_TEST_LIBRARY_VERSION", "1.0")}


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of this machine: 2 CPUs and one logical GPU (Ray schedules by it; the work runs on the
    CPU), started for this module and stopped after it."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("another test left Ray connected")
    with pytest.MonkeyPatch.context() as patch:  # what the cluster's processes inherit
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def ray_executor(**options):
    from emocli.features.ray_runner import RayExecutor

    return RayExecutor(**options)


def rows(store: FeatureStore, name: str) -> dict[str, tuple]:
    """sample_id -> (values, times) as stored."""
    table = store.read(name).to_pydict()
    times = table.get("times", [None] * len(table["sample_id"]))
    return {sid: (np.asarray(v, np.float32), t) for sid, v, t in zip(table["sample_id"], table["values"], times)}


def assert_same_features(store: FeatureStore, reference: FeatureStore, missing: dict[str, set[str]] | None = None):
    """Every feature set of `store` is in `reference`, with the same samples (less those `missing` from a
    feature set) and bit-identical values and times."""
    names = [info.name for info in store.feature_sets()]
    assert names and set(names) <= {info.name for info in reference.feature_sets()}
    for name in names:
        ours, theirs = rows(store, name), rows(reference, name)
        assert sorted(ours) == sorted(set(theirs) - (missing or {}).get(name, set())), name
        for sample_id, (values, times) in ours.items():
            assert np.array_equal(values, theirs[sample_id][0]), (name, sample_id)
            assert times == theirs[sample_id][1], (name, sample_id)


# --- fake extractors: every kind of extractor, failures, a sample that kills its worker -----------------

def test_every_kind_of_extractor_runs_on_the_cluster_as_in_one_process(cluster, tmp_path):
    """CPU extractors as tasks, batched ones (one with a `prepare` over the whole table) as tasks and then in
    GPU actors, a dataset's precomputed features in this process; a batch that raises is narrowed down to
    its sample; a sample that kills its worker every time is that sample's WorkerCrashed failure."""
    data = make_sample_set(tmp_path / "media")
    data.table.loc[5, "text"] = "boom"  # TextStats raises on a batch holding it
    values = {f"s{i:03d}": Features(np.full(2, i, np.float32)) for i in range(12)}
    data.precomputed.append(PrecomputedFeatures("facet", "visual", "vector", 2, values, {"file": "facet.csd"}))
    extractors = [NpyMean(), NpyFrames(), TextStats(), SpeakerShare()]
    reference = FeatureStore(tmp_path / "one-process")
    reference.extract(data, extractors, workers=0, progress=False, limit=10)

    batched = FeatureStore(tmp_path / "gpu-actors")
    report = batched.extract(data, extractors[2:], progress=False, limit=10, executor=ray_executor(gpus=1))
    assert [(r.extracted, r.failed) for r in report.feature_sets] == [(9, 1), (10, 0), (10, 0)]
    assert_same_features(batched, reference)

    crash = Path(data.table.loc[3, "audio_path"]).with_name("crash.npy")  # NpyMean dies on it, as on a segfault
    crash.write_bytes(Path(data.table.loc[3, "audio_path"]).read_bytes())
    data.table.loc[3, "audio_path"] = str(crash)
    store = FeatureStore(tmp_path / "tasks")
    report = store.extract(data, extractors, progress=False, limit=10, executor=ray_executor(max_retries=0))
    assert [(r.extracted, r.failed) for r in report.feature_sets] == [(9, 1), (10, 0), (9, 1), (10, 0), (10, 0)]
    failures = store.failures(NpyMean().feature_set_name)
    assert failures["error_type"].tolist() == ["WorkerCrashed"] and failures["sample_id"].tolist() == ["s003"]
    assert "died each time it ran npy-mean on this sample alone (1 attempts; WorkerCrashedError" in failures["message"][0]
    assert store.failures(TextStats().feature_set_name)["message"].tolist() == ["tokenizer exploded"]
    assert_same_features(store, reference, missing={NpyMean().feature_set_name: {"s003"}})


def test_a_worker_with_other_library_versions_stops_the_run(cluster, tmp_path, monkeypatch):
    """Its features would be stored under a name that says otherwise: one line names the node and versions."""
    data = make_sample_set(tmp_path / "media", n=4)
    monkeypatch.setenv("EMO_TEST_LIBRARY_VERSION", "2.0")  # here only: the cluster's workers started with 1.0
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"^node .* would make feature set audio__versioned__\w+, not "
                                          r"audio__versioned__\w+: fake-library 1.0 \(driver: 2.0\); install the same "
                                          r"versions on every node$"):
        store.extract(data, [Versioned()], progress=False, executor=ray_executor())
    assert store.read(Versioned().feature_set_name).num_rows == 0


def test_the_cli_runs_on_the_cluster_it_is_connected_to(cluster, tmp_path):
    from test_extract_cli import FakeAdapter  # noqa: F401 - registered below by its module path

    from emocli import datasets, features

    root = tmp_path / "media"
    make_sample_set(root)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(datasets.ADAPTERS, "fake", "test_extract_cli:FakeAdapter")
        patch.setitem(features.EXTRACTORS, "npy-mean", "test_store:NpyMean")
        base = ["extract", "--dataset", "fake", "--root", str(root), "--audio", "npy-mean", "--out", str(tmp_path / "s")]
        result = runner.invoke(app, [*base, "--executor", "ray", "--task-cpus", "1"])
        assert result.exit_code == 0, result.output
        assert "ray: cluster at" in result.stderr and "1 node(s), 2 CPUs, 1 GPUs" in result.stderr
        assert f"{NpyMean().feature_set_name}: 12 extracted, 0 cached, 0 failed" in result.stdout
        wrong = runner.invoke(app, [*base, "--address", "auto"])
        assert wrong.exit_code == 2 and "--address only go with --executor ray" in wrong.output


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds when it is not installed
    manifest = tmp_path / "m.csv"
    manifest.write_text("text,label\nhello,joy\n")
    result = CliRunner().invoke(app, ["extract", "--dataset", "manifest", "--root", str(manifest), "--text", "glove",
                                      "--out", str(tmp_path / "s"), "--executor", "ray"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--executor ray needs Ray, which is not installed: pip install 'emocli[ray]'"
    assert not (tmp_path / "s").exists()


# --- real data: Whisper base and MFCC on 48 RAVDESS clips -------------------------------------------------

@pytest.fixture(scope="module")
def ravdess_subset(ravdess_root) -> SampleSet:
    """48 RAVDESS clips, two per actor."""
    from emocli.datasets import load_dataset

    full = load_dataset("ravdess", ravdess_root)
    table = full.table[full.table.groupby("speaker").cumcount() % 30 == 0]
    assert len(table) == 48
    return SampleSet(full.dataset, full.root, table, full.labels, full.protocols, full.options)


def ravdess_extractors() -> list[Extractor]:
    from emocli.features.presets import build_extractor

    return [build_extractor("whisper-base"), build_extractor("mfcc")]


class KillingProgress(Progress):
    """A silent progress display that, when the `after`-th result arrives, SIGKILLs a Ray worker process
    (a descendant of this one) that is running an extraction task at that moment."""

    def __init__(self, after: int):
        super().__init__(disable=True)
        self.after, self.received, self.killed = after, 0, []

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self.received += 1
        if self.received >= self.after and not self.killed:
            busy = [pid for pid in descendants(os.getpid()) if title(pid).startswith(WORKER_TASK)]
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                self.killed.append((busy[0], self.received))


def descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_ravdess_on_a_ray_cluster_is_the_one_process_store_even_when_a_worker_is_killed(
    cluster, ravdess_subset, tmp_path
):
    """Whisper base and MFCC of 48 clips: in one process; on the cluster; on the cluster with a worker
    SIGKILLed in the middle of its task. (One test: the one-process store is the costly part, and xdist
    could give two tests two copies of it.)"""
    one_process = FeatureStore(tmp_path / "one-process")
    one_process.extract(ravdess_subset, ravdess_extractors(), workers=0, progress=False)

    store = FeatureStore(tmp_path / "ray")
    report = store.extract(ravdess_subset, ravdess_extractors(), executor=ray_executor(), progress=False)
    # a result per sample received (48 + 0 of 48 each) and every sample stored: each exactly once
    assert [(r.extracted, r.failed) for r in report.feature_sets] == [(48, 0), (48, 0)]
    assert len(store.feature_sets()) == 2
    assert_same_features(store, one_process)
    assert store.samples().equals(one_process.samples())

    killed = FeatureStore(tmp_path / "killed")
    display = KillingProgress(after=20)
    report = killed.extract(ravdess_subset, ravdess_extractors(), executor=ray_executor(), progress=display)
    (pid, when), = display.killed
    assert 20 <= when < 96 and not Path(f"/proc/{pid}").exists()  # killed mid-job, and it is gone
    assert [(r.extracted, r.failed) for r in report.feature_sets] == [(48, 0), (48, 0)]
    assert len(killed.feature_sets()) == 2
    assert_same_features(killed, one_process)


def test_emo_predict_extracts_its_inputs_on_the_cluster(cluster, tmp_path):
    """Many inputs of `emo predict`: their features extracted on the cluster, the same predictions."""
    import soundfile as sf
    from test_predict import RATE, SMALL_CFNSR, make_tone_store, tone, train_tiny

    unit = train_tiny(make_tone_store(tmp_path / "tones", n=18), tmp_path / "runs",
                      overrides=[*SMALL_CFNSR, "epochs=2"], modalities=["audio"])
    inputs = []
    for i, label in enumerate(["low", "mid", "high"] * 3):
        inputs.append(tmp_path / f"{i}-{label}.wav")
        sf.write(inputs[-1], tone(label, 1.5, seed=50 + i), RATE)
    here = CliRunner().invoke(app, ["predict", str(unit), *map(str, inputs), "-o", str(tmp_path / "here.csv"), "-q"])
    assert here.exit_code == 0, here.output
    there = CliRunner().invoke(app, ["predict", str(unit), *map(str, inputs), "-o", str(tmp_path / "ray.csv"), "-q",
                                     "--executor", "ray"])
    assert there.exit_code == 0, there.output
    expected, got = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("here", "ray"))
    assert len(got) == 9 and got.equals(expected)
