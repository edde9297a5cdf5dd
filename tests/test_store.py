"""The Parquet feature store: layout, cache keys, failures, resume after kill -9, shards, workers.

Small fake extractors over generated .npy files stand in for the real ones, so these tests check the
store's behaviour, not a library's; test_extract_cli.py imports them too.
"""

from __future__ import annotations

import json
import os
import signal
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

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import file_fingerprint, text_fingerprint
from emocli.core.samples import PrecomputedFeatures, SampleSet
from emocli.core.types import Features, LabelMap
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.runner import SampleFailure, extract_samples
from emocli.features.store import FeatureStore, Shard


class NpyMean(Extractor):
    """audio_path is a .npy of shape [T, 3]: its mean over time, times `scale`."""

    name = "npy-mean"
    modality = "audio"
    kind = "vector"
    libraries = ("numpy",)

    class Params(ExtractorParams):
        scale: float = 1.0
        delay_s: float = 0.0  # slows extraction down for the interruption test

    @property
    def dim(self) -> int:
        return 3

    def input_fingerprint(self, sample) -> str:
        return file_fingerprint(sample["audio_path"])

    def extract(self, sample) -> Features:
        time.sleep(self.params.delay_s)
        path = sample["audio_path"]
        if "crash" in Path(path).name:
            os._exit(3)  # a native library dying on a corrupt file
        return Features(np.load(path).mean(axis=0) * self.params.scale)


class NpyFrames(Extractor):
    """The .npy itself as a frame sequence at 100 frames per second."""

    name = "npy-frames"
    modality = "audio"
    kind = "sequence"

    class Params(ExtractorParams):
        pass

    @property
    def dim(self) -> int:
        return 3

    def input_fingerprint(self, sample) -> str:
        return file_fingerprint(sample["audio_path"])

    def extract(self, sample) -> Features:
        frames = np.load(sample["audio_path"])
        return Features(frames, np.arange(len(frames)) / 100.0)


class TextStats(Extractor):
    """A batched 'encoder': [characters, words] of the text; a batch holding "boom" raises as a whole."""

    name = "text-stats"
    modality = "text"
    kind = "vector"
    batch_size = 4

    class Params(ExtractorParams):
        pass

    @property
    def dim(self) -> int:
        return 2

    def input_fingerprint(self, sample) -> str:
        return text_fingerprint(sample["text"] or "")

    def extract_batch(self, samples):
        if any(s["text"] == "boom" for s in samples):
            raise RuntimeError("tokenizer exploded")
        return [Features([len(s["text"]), len(s["text"].split())]) for s in samples]


def make_sample_set(root: Path, n: int = 12, dataset: str = "fake") -> SampleSet:
    """n clips of T in 4..9 frames; sample i's text is i words long."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = root / f"clip{i:03d}.npy"
        if not path.exists():
            np.save(path, rng.normal(size=(4 + i % 6, 3)).astype(np.float32))
        rows.append(
            {
                "sample_id": f"s{i:03d}",
                "speaker": f"spk{i % 3}",
                "label": ("happy", "sad")[i % 2],
                "text": " ".join(["word"] * (i + 1)),
                "audio_path": str(path),
            }
        )
    return SampleSet(dataset, root, pd.DataFrame(rows), LabelMap(("happy", "sad")))


def expected_means(sample_set: SampleSet) -> dict[str, np.ndarray]:
    return {row.sample_id: np.load(row.audio_path).mean(axis=0) for row in sample_set.table.itertuples()}


@pytest.fixture
def data(tmp_path) -> SampleSet:
    return make_sample_set(tmp_path / "media")


def test_layout_types_and_provenance(tmp_path, data):
    store = FeatureStore(tmp_path / "store")
    report = store.extract(data, [NpyMean(), NpyFrames()], workers=0, progress=False)
    assert [r.extracted for r in report.feature_sets] == [12, 12]

    samples = store.samples()
    assert list(samples["sample_id"]) == [f"s{i:03d}" for i in range(12)]
    assert list(samples["label"][:2]) == ["happy", "sad"] and samples["labels"][0] == []
    assert store.dataset()["dataset"] == "fake"

    vector, sequence = NpyMean(), NpyFrames()
    assert [i.name for i in store.feature_sets()] == sorted([vector.feature_set_name, sequence.feature_set_name])
    table = store.read(vector.feature_set_name)
    assert table.schema.field("values").type == pa.list_(pa.float32(), 3)
    assert table.column("sample_id").to_pylist() == list(samples["sample_id"])
    metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert metadata["emo.extractor"] == "npy-mean"
    assert json.loads(metadata["emo.params"]) == {"scale": 1.0, "delay_s": 0.0}
    assert "numpy" in json.loads(metadata["emo.versions"])
    assert json.loads(metadata["emo.dataset"])["dataset"] == "fake"
    # ... and each part file on disk says the same on its own
    part = next((store.path / vector.feature_set_name / "parts").glob("*.parquet"))
    assert pq.read_schema(part).metadata[b"emo.extractor"] == b"npy-mean"
    spec = json.loads((store.path / vector.feature_set_name / "spec.json").read_text())
    assert spec["extractor"]["params"]["scale"] == 1.0 and spec["dataset"]["n_samples"] == 12

    for sample_id, mean in expected_means(data).items():
        np.testing.assert_allclose(store.read_features(vector.feature_set_name)[sample_id].values, mean, rtol=1e-6)

    frames = store.read(sequence.feature_set_name)
    assert frames.schema.field("values").type == pa.list_(pa.list_(pa.float32(), 3))
    assert frames.schema.field("times").type == pa.list_(pa.float64())
    features = store.read_features(sequence.feature_set_name)
    clip5 = np.load(data.table.loc[5, "audio_path"])
    np.testing.assert_array_equal(features["s005"].values, clip5)
    np.testing.assert_allclose(features["s005"].times, np.arange(len(clip5)) / 100.0)

    info = store.find(modality="audio", extractor="npy-frames")
    assert len(info) == 1 and info[0].kind == "sequence" and info[0].dim == 3
    assert (info[0].n_rows, info[0].n_failures) == (12, 0)


def test_second_run_does_no_work_and_params_make_new_sets(tmp_path, data):
    store = FeatureStore(tmp_path / "store")
    store.extract(data, [NpyMean()], workers=0, progress=False)
    parts_before = sorted((store.path / NpyMean().feature_set_name).rglob("*.parquet"))

    again = store.extract(data, [NpyMean()], workers=0, progress=False).feature_sets[0]
    assert (again.extracted, again.cached, again.failed) == (0, 12, 0)
    assert sorted((store.path / NpyMean().feature_set_name).rglob("*.parquet")) == parts_before

    scaled = NpyMean(scale=2.0)
    assert scaled.feature_set_name != NpyMean().feature_set_name
    assert store.extract(data, [scaled], workers=0, progress=False).feature_sets[0].extracted == 12
    doubled = store.read_features(scaled.feature_set_name)
    plain = store.read_features(NpyMean().feature_set_name)
    np.testing.assert_allclose(doubled["s003"].values, 2 * plain["s003"].values, rtol=1e-6)


def test_changed_input_is_re_extracted_and_supersedes_its_row(tmp_path, data):
    store = FeatureStore(tmp_path / "store")
    name = NpyMean().feature_set_name
    store.extract(data, [NpyMean()], workers=0, progress=False)
    path = Path(data.table.loc[4, "audio_path"])
    np.save(path, np.full((5, 3), 7.0, dtype=np.float32))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks

    report = store.extract(data, [NpyMean()], workers=0, progress=False).feature_sets[0]
    assert (report.extracted, report.cached) == (1, 11)
    table = store.read(name)
    assert table.num_rows == 12
    assert store.read_features(name)["s004"].values.tolist() == [7.0, 7.0, 7.0]
    row = table.filter(pa.compute.equal(table["sample_id"], "s004"))
    assert row["input_fingerprint"][0].as_py() == file_fingerprint(path)


def test_bad_inputs_are_recorded_and_retried_only_when_asked_or_changed(tmp_path, data):
    Path(data.table.loc[2, "audio_path"]).write_bytes(b"not a numpy file")
    Path(data.table.loc[7, "audio_path"]).write_bytes(b"")
    os.remove(data.table.loc[9, "audio_path"])
    store = FeatureStore(tmp_path / "store")
    name = NpyMean().feature_set_name

    report = store.extract(data, [NpyMean()], workers=0, progress=False)
    assert (report.feature_sets[0].extracted, report.feature_sets[0].failed) == (9, 3)
    failures = store.failures(name)
    assert list(failures["sample_id"]) == ["s002", "s007", "s009"]
    assert failures.loc[2, "error_type"] == "FileNotFoundError"  # fingerprinting a missing file
    assert failures.loc[0, "path"] == data.table.loc[2, "audio_path"]
    assert failures["message"].str.len().min() > 0 and failures["traceback"].str.contains("Error").all()
    assert store.read(name).num_rows == 9 and store.feature_sets()[0].n_failures == 3

    again = store.extract(data, [NpyMean()], workers=0, progress=False).feature_sets[0]
    assert (again.extracted, again.cached, again.failed, again.known_failures) == (0, 9, 0, 3)
    retried = store.extract(data, [NpyMean()], workers=0, progress=False, retry_failures=True).feature_sets[0]
    assert (retried.extracted, retried.failed) == (0, 3)

    np.save(data.table.loc[2, "audio_path"], np.ones((4, 3), dtype=np.float32))  # the user fixes one file
    fixed = store.extract(data, [NpyMean()], workers=0, progress=False).feature_sets[0]
    assert (fixed.extracted, fixed.known_failures) == (1, 2)
    assert list(store.failures(name)["sample_id"]) == ["s007", "s009"]
    assert store.read_features(name)["s002"].values.tolist() == [1.0, 1.0, 1.0]


def test_worker_pool_matches_in_process_and_survives_a_crashing_sample(tmp_path, data):
    crash = Path(data.table.loc[3, "audio_path"]).with_name("crash.npy")
    np.save(crash, np.load(data.table.loc[3, "audio_path"]))
    data.table.loc[3, "audio_path"] = str(crash)
    pooled = FeatureStore(tmp_path / "pooled")
    report = pooled.extract(data, [NpyMean(), NpyFrames()], workers=2, progress=False)
    assert [(r.extracted, r.failed) for r in report.feature_sets] == [(11, 1), (12, 0)]
    assert pooled.failures(NpyMean().feature_set_name)["error_type"].tolist() == ["WorkerCrashed"]

    data.table.loc[3, "audio_path"] = str(crash.with_name("clip003.npy"))
    in_process = FeatureStore(tmp_path / "in-process")
    in_process.extract(data, [NpyMean(), NpyFrames()], workers=0, progress=False)
    name = NpyFrames().feature_set_name
    columns = ["sample_id", "values", "times"]  # s003's fingerprint differs: another file, same content
    assert pooled.read(name).select(columns).equals(in_process.read(name).select(columns))


def test_batched_extractor_isolates_the_failing_sample(tmp_path, data):
    data.table.loc[5, "text"] = "boom"
    store = FeatureStore(tmp_path / "store")
    report = store.extract(data, [TextStats()], workers=2, progress=False).feature_sets[0]
    assert (report.extracted, report.failed) == (11, 1)
    assert store.failures(TextStats().feature_set_name)["message"].tolist() == ["tokenizer exploded"]
    assert store.read_features(TextStats().feature_set_name)["s002"].values.tolist() == [14.0, 3.0]


def test_wrong_output_shape_is_a_failure_not_a_corrupt_feature_set(tmp_path, data):
    class TooWide(NpyMean):
        name = "too-wide"

        def extract(self, sample):
            return Features(np.zeros(4))

    store = FeatureStore(tmp_path / "store")
    report = store.extract(data, [TooWide()], workers=0, progress=False).feature_sets[0]
    assert report.failed == 12
    assert "expected a vector of 3 values" in store.failures(TooWide().feature_set_name)["message"][0]


def test_shards_are_disjoint_and_merge_into_the_unsharded_store(tmp_path, data):
    ids = list(data.table["sample_id"])
    slices = [{i for i in ids if Shard(k, 3).contains(i)} for k in (1, 2, 3)]
    assert sum(len(s) for s in slices) == len(ids) and set().union(*slices) == set(ids)
    assert all(slices)

    whole = FeatureStore(tmp_path / "whole")
    whole.extract(data, [NpyMean(), NpyFrames()], workers=0, progress=False)
    shards = [FeatureStore(tmp_path / f"shard{k}") for k in (1, 2, 3)]
    for k, store in enumerate(shards, 1):
        report = store.extract(data, [NpyMean(), NpyFrames()], workers=0, shard=f"{k}/3", progress=False)
        assert report.feature_sets[0].extracted == len(slices[k - 1])

    merged = FeatureStore(tmp_path / "merged")
    merged.merge(shards)
    assert merged.samples().equals(whole.samples())
    for info in whole.feature_sets():
        assert merged.read(info.name).select(["sample_id", "values"]).equals(
            whole.read(info.name).select(["sample_id", "values"])
        )
        assert len(list((merged.path / info.name / "parts").glob("*.parquet"))) == 1  # compacted
    again = merged.extract(data, [NpyMean(), NpyFrames()], workers=0, progress=False)
    assert [r.cached for r in again.feature_sets] == [12, 12]


def test_store_refuses_another_dataset_and_bad_shards(tmp_path, data):
    store = FeatureStore(tmp_path / "store")
    store.extract(data, [NpyMean()], workers=0, progress=False)
    other = make_sample_set(tmp_path / "media", dataset="other")
    with pytest.raises(ConfigError, match="holds dataset 'fake'"):
        store.extract(other, [NpyMean()], workers=0, progress=False)
    with pytest.raises(ConfigError, match="K/N"):
        Shard.parse("2-4")
    with pytest.raises(ConfigError, match="between 1 and N"):
        Shard.parse("0/4")
    with pytest.raises(EmoError, match="no feature set 'audio__nope__0'"):
        store.read("audio__nope__0")


def test_precomputed_features_become_a_feature_set(tmp_path, data):
    values = {f"s{i:03d}": Features(np.full(2, i)) for i in range(11)}  # s011 has none
    data.precomputed.append(
        PrecomputedFeatures("facet", "visual", "vector", 2, values, {"file": "facet.csd", "fingerprint": "abc"})
    )
    store = FeatureStore(tmp_path / "store")
    report = store.extract(data, [], workers=0, progress=False).feature_sets[0]
    assert report.name.startswith("visual__precomputed-facet__")
    assert (report.extracted, report.failed) == (11, 1)
    assert store.read_features(report.name)["s004"].values.tolist() == [4.0, 4.0]
    assert store.failures(report.name)["path"].tolist() == ["facet.csd"]
    assert store.extract(data, [], workers=0, progress=False).feature_sets[0].cached == 11


def test_extract_samples_in_memory_shares_the_runner(data):
    expected = expected_means(data)
    data.table.loc[1, "audio_path"] = str(Path(data.root) / "missing.npy")
    results = extract_samples([NpyMean(), TextStats()], data.table)
    means = results[NpyMean().feature_set_name]
    assert isinstance(means[1], SampleFailure) and means[1].error_type == "FileNotFoundError"
    assert "missing.npy" in str(means[1])
    np.testing.assert_allclose(means[0].values, expected["s000"], rtol=1e-6)
    assert results[TextStats().feature_set_name][2].values.tolist() == [14.0, 3.0]


KILLED_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store import NpyMean, make_sample_set
from emocli.features.store import FeatureStore
data = make_sample_set(Path({media!r}), n=60)
FeatureStore({store!r}).extract(data, [NpyMean(delay_s=0.1)], workers=2, progress=False, commit_rows=4)
"""


def test_kill_9_mid_run_resumes_to_the_uninterrupted_table(tmp_path):
    data = make_sample_set(tmp_path / "media", n=60)
    store = FeatureStore(tmp_path / "store")
    name = NpyMean(delay_s=0.1).feature_set_name
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), media=str(tmp_path / "media"), store=str(store.path))
    # A session of its own, so that the kill reaches the run and its worker processes, as kill -9 of a
    # job would on a cluster node.
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], start_new_session=True)
    parts = store.path / name / "parts"
    deadline = time.monotonic() + 60
    while len(list(parts.glob("*.parquet"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    committed = store.read(name).num_rows
    assert 0 < committed < 60, "the kill should land in the middle of the run"

    resumed = store.extract(data, [NpyMean(delay_s=0.1)], workers=0, progress=False).feature_sets[0]
    assert resumed.cached == committed and resumed.extracted == 60 - committed

    reference = FeatureStore(tmp_path / "reference")
    reference.extract(data, [NpyMean(delay_s=0.0)], workers=0, progress=False)
    # same rows as an uninterrupted run (delay_s only slows it down, so compare ids and values)
    reference_table = reference.read(NpyMean().feature_set_name)
    assert store.read(name).select(["sample_id", "input_fingerprint", "values"]).equals(
        reference_table.select(["sample_id", "input_fingerprint", "values"])
    )


CONCURRENT_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store import NpyFrames, NpyMean, make_sample_set
from emocli.features.store import FeatureStore
data = make_sample_set(Path({media!r}), n=24)
extractor = NpyMean(delay_s=0.02) if sys.argv[1] == "mean" else NpyFrames()
FeatureStore({store!r}).extract(data, [extractor], workers=0, progress=False, commit_rows=2)
"""


def test_runs_sharing_a_store_take_turns(tmp_path):
    """Two extractions into one store at once (other feature sets, e.g. audio and text) both finish: the
    store's writer lock makes the second wait (saying so) instead of compacting the first one's parts."""
    data = make_sample_set(tmp_path / "media", n=24)
    script = CONCURRENT_RUN.format(tests=str(Path(__file__).parent), media=str(tmp_path / "media"),
                                   store=str(tmp_path / "store"))
    runs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), which], stderr=subprocess.PIPE, text=True)
            for which in ("mean", "frames")]
    errors = [run.communicate()[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    store = FeatureStore(tmp_path / "store")
    assert len(store.samples()) == 24
    assert [(info.n_rows, info.n_failures) for info in store.feature_sets()] == [(24, 0), (24, 0)]
    expected = expected_means(data)
    for sample_id, values in store.read_features(NpyMean(delay_s=0.02).feature_set_name).items():
        np.testing.assert_allclose(values.values, expected[sample_id], rtol=1e-6)


def test_a_split_added_to_the_same_source_revises_the_index_and_another_source_may_not(tmp_path):
    """A manifest given a split column after its first extraction: re-extracting revises the samples' split
    (features kept, the revision recorded); the same ids from another folder with another split conflict."""
    store = FeatureStore(tmp_path / "store")
    unsplit = make_sample_set(tmp_path / "media", n=6)
    store.extract(unsplit, [NpyMean()], workers=0, progress=False)
    assert store.samples()["split"].isna().all()
    split = SampleSet("fake", unsplit.root, unsplit.table.assign(split=["train"] * 4 + ["test"] * 2), unsplit.labels)
    report = store.extract(split, [NpyMean()], workers=0, progress=False)
    assert report.feature_sets[0].cached == 6 and report.revised == {"split": 6}
    assert "split of 6 samples revised in the index" in report.summary()
    assert store.samples()["split"].tolist() == ["train"] * 4 + ["test"] * 2
    assert store.dataset()["revisions"][0]["samples"] == {"split": 6}
    assert store.extract(split, [NpyMean()], workers=0, progress=False).revised == {}  # nothing left to revise

    elsewhere = SampleSet("fake", tmp_path / "copy", split.table.assign(split=["test"] * 6), unsplit.labels)
    with pytest.raises(ConfigError, match=r"4 samples are in this store's index with other values: s000 \(split: "):
        store.extract(elsewhere, [NpyMean()], workers=0, progress=False)
