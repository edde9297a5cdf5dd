"""Several corpora as one dataset (`corpora`) and the cross-corpus protocols (`emo cross-corpus`): on generated
files named as RAVDESS and EmoDB name theirs, and on a generated store of three corpora whose features carry
the class and a corpus offset (the studio), so that what the protocols measure is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_emodb import write_corpus
from typer.testing import CliRunner

from emocli.cli import app
from emocli.core.errors import ConfigError
from emocli.core.samples import PrecomputedFeatures, SampleSet
from emocli.core.types import SHARED_EMOTIONS, Features, LabelMap
from emocli.datasets import load_dataset
from emocli.features.store import FeatureStore
from emocli.training.crosscorpus import corpus_metrics, cross_corpus, protocol_units

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A data home holding RAVDESS (two actors) and EmoDB (four utterances) as generated files."""
    for name in ("RAVDESS", "EMODB"):
        monkeypatch.delenv(f"EMO_{name}_ROOT", raising=False)
    home = tmp_path / "home"
    write_corpus(home / "emodb", ["03a01Fa", "08b10Wc", "16a05Lb", "15b03Nd"])
    actor = home / "ravdess" / "Actor_01"
    actor.mkdir(parents=True)
    body = (home / "emodb" / "wav" / "03a01Fa.wav").read_bytes()
    for emotion in ("01", "02", "08"):
        for who in ("01", "22"):
            (actor / f"03-01-{emotion}-01-01-01-{who}.wav").write_bytes(body)
    return home


def test_corpora_are_one_table_in_shared_emotions(home):
    samples = load_dataset("corpora", home)
    table = samples.table.set_index("sample_id")
    assert samples.labels.names == SHARED_EMOTIONS
    assert table.loc["ravdess/01-02-01-01-01-01", "label"] == "neutral"  # calm is neutral
    assert table.loc["emodb/03a01Fa", "label"] == "happy" and table.loc["emodb/03a01Fa", "speaker"] == "emodb/speaker_03"
    assert "emodb/16a05Lb" not in table.index and any("1 bored" in note for note in samples.notes)
    assert set(table.loc[table["corpus"] == "ravdess", "fold"]) == {0} and set(table.loc[table["corpus"] == "emodb", "fold"]) == {1}
    assert table.loc["emodb/15b03Nd", "split"] == "test" and table.loc["emodb/15b03Nd", "corpus_fold"] == 4
    assert table.loc["ravdess/01-08-01-01-01-22", "split"] == "test"  # RAVDESS's test actors 21-24
    assert set(table["language"]) == {"en", "de"}
    only = load_dataset("corpora", home, corpora="emodb,ravdess")
    assert list(dict.fromkeys(only.table["corpus"])) == ["emodb", "ravdess"]
    tested = load_dataset("corpora", home, evaluate_only="emodb").table
    assert (tested.loc[tested["corpus"] == "emodb", "split"] == "test").all() and tested["evaluate_only"].sum() == 3
    with pytest.raises(ConfigError, match="evaluate_only names casia"):
        load_dataset("corpora", home, evaluate_only="casia")


def test_unknown_or_missing_corpora_are_one_error(home):
    with pytest.raises(ConfigError, match="meld is not a speech corpus"):
        load_dataset("corpora", home, corpora="ravdess,meld")
    with pytest.raises(ConfigError, match="named twice"):
        load_dataset("corpora", home, corpora="emodb,emodb")
    (home / "ravdess").rename(home / "elsewhere")
    with pytest.raises(Exception, match="two corpora or more; found emodb"):
        load_dataset("corpora", home)


def toy_corpora(path: Path, seed: int = 0) -> FeatureStore:
    """Three corpora of six speakers each (three speaker folds); 4-d features = the class's centre + the
    corpus's offset (its studio) + the speaker's + noise. Corpus "c" has no "surprised"."""
    rng = np.random.default_rng(seed)
    classes = ("neutral", "happy", "sad", "surprised")
    centres = rng.normal(0, 1.5, (len(classes), 4))
    rows, values = [], {}
    for c, corpus in enumerate("abc"):
        studio = rng.normal(0, 4, 4)
        for s in range(6):
            voice = rng.normal(0, 0.5, 4)
            for i in range(24):
                label = classes[i % (3 if corpus == "c" else 4)]
                sid = f"{corpus}/{s}/{i}"
                rows.append({"sample_id": sid, "speaker": f"{corpus}/s{s}", "label": label, "corpus": corpus,
                             "fold": c, "corpus_fold": s // 2, "split": "test" if s == 5 else "train"})
                values[sid] = Features(centres[classes.index(label)] + studio + voice + rng.normal(0, 0.8, 4))
    table = pd.DataFrame(rows).astype({"corpus": "string", "corpus_fold": "Int64"})
    sample_set = SampleSet("corpora", path, table, LabelMap(SHARED_EMOTIONS),
                           precomputed=[PrecomputedFeatures("toy", "audio", "vector", 4, values, {"seed": seed})])
    store = FeatureStore(path)
    store.extract(sample_set, [], workers=0, progress=False)
    return store


@pytest.fixture(scope="module")
def corpora_store(tmp_path_factory) -> FeatureStore:
    return toy_corpora(tmp_path_factory.mktemp("corpora"))


def test_protocol_units_never_show_the_test_corpus_or_speakers(corpora_store):
    samples = corpora_store.samples()
    units = protocol_units(samples, seeds=[1, 2])
    assert sorted({u.name for u in units}) == ["loco-a", "loco-b", "loco-c"] + sorted(
        f"{p}-{c}-fold{k}" for p in ("speakers", "within") for c in "abc" for k in range(3))
    for unit in units:
        test = samples.iloc[unit.rows["test"]]
        seen = samples.iloc[np.concatenate([unit.rows["train"], unit.rows["valid"]])]
        assert set(test["speaker"]).isdisjoint(seen["speaker"]) and len(unit.rows["valid"])
        if unit.protocol == "loco":
            assert set(test["corpus"]) == {unit.corpus} and unit.corpus not in set(seen["corpus"])
        elif unit.protocol == "within":
            assert set(seen["corpus"]) == set(test["corpus"]) == {unit.corpus}
        else:
            assert set(test["corpus"]) == {unit.corpus} and set(seen["corpus"]) == {"a", "b", "c"}
    loco = [u for u in units if u.name == "loco-a"]
    assert not np.array_equal(loco[0].rows["valid"], loco[1].rows["valid"])  # each seed carves its own


def test_open_and_shared_readings():
    names = ["neutral", "happy", "sad", "surprised"]
    y = np.array([0, 0, 1, 2])
    probs = np.array([[0.1, 0.1, 0.1, 0.7], [0.6, 0.2, 0.1, 0.1], [0.1, 0.8, 0.05, 0.05], [0.1, 0.1, 0.2, 0.6]])
    result = corpus_metrics(y, probs, names, trained=np.array([0, 1, 2, 3]))
    assert result["open"]["recall"] == {"neutral": 0.5, "happy": 1.0, "sad": 0.0}  # "surprised" counts as wrong
    assert result["shared"]["recall"] == {"neutral": 1.0, "happy": 1.0, "sad": 1.0}  # argmax over the test's classes
    assert result["open"]["uar"] == pytest.approx(0.5) and result["shared"]["accuracy"] == 1.0


def test_corpus_standardisation_removes_the_studio_offset(corpora_store, tmp_path):
    plain = cross_corpus(corpora_store.path, ["floor"], {}, tmp_path / "plain", protocols=["loco"])
    adapted = cross_corpus(corpora_store.path, ["floor"], {}, tmp_path / "adapted", protocols=["loco"],
                           normalize_by="corpus")
    uar = {run: np.mean([r["loco_shared"]["mean"] for r in report["summary"]]) for run, report in
           (("plain", plain), ("adapted", adapted))}
    assert uar["adapted"] > uar["plain"] + 0.1 and uar["adapted"] > 0.8
    row = next(r for r in adapted["summary"] if r["corpus"] == "c")
    assert set(row["loco_recall"]) == {"neutral", "happy", "sad"}
    assert (tmp_path / "adapted" / "results.md").read_text().count("| c | floor |") == 1


def test_a_registered_model_through_the_cli(corpora_store, tmp_path):
    out = tmp_path / "xc"
    result = runner.invoke(app, ["cross-corpus", "floor", "mmer", "-f", str(corpora_store.path), "--protocol", "loco",
                                 "--corpus", "c", "--preset", "ravdess-small-mmer", "--set", "epochs=3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert [r["learner"] for r in report["summary"]] == ["floor", "mmer"]
    unit = Path(report["units"]["mmer"][0]["folder"])
    config = json.loads((unit / "config.json").read_text())
    assert config["protocol"] == {"name": "loco", "test_corpus": "c", "corpus_fold": None}
    test_ids = json.loads((unit / "splits.json").read_text())["test"]
    assert {i.split("/")[0] for i in test_ids} == {"c"}
    assert "| c | mmer |" in result.output
    bad = runner.invoke(app, ["cross-corpus", "forest", "-f", str(corpora_store.path), "-o", str(out)])
    assert isinstance(bad.exception, ConfigError) and "choose floor and/or" in str(bad.exception)


def test_held_out_predictions_are_written_per_learner(corpora_store, tmp_path):
    cross_corpus(corpora_store.path, ["floor"], {}, tmp_path, protocols=["loco"], seeds=[1])
    table = pd.read_parquet(tmp_path / "floor-predictions.parquet")
    assert len(table) == len(corpora_store.samples()) and set(table["unit"]) == {"loco-a", "loco-b", "loco-c"}
    probs = table[[c for c in table if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (table["corpus"] == table["unit"].str.removeprefix("loco-")).all()


def test_a_corpus_of_two_speakers_trains_within_itself_without_validation(corpora_store):
    """TESS has two actresses: within it, each trains on the other alone, with no speaker left to validate on."""
    samples = corpora_store.samples()
    two = samples[samples["speaker"].isin(["c/s0", "c/s2"]) | (samples["corpus"] != "c")].reset_index(drop=True)
    two.loc[two["speaker"] == "c/s2", "corpus_fold"] = 1
    units = [u for u in protocol_units(two, seeds=[1], protocols=["within"]) if u.corpus == "c"]
    assert [len(u.rows["valid"]) for u in units] == [0, 0] and all(len(u.rows["train"]) == 24 for u in units)


def test_an_evaluate_only_corpus_is_tested_and_never_trained_on(corpora_store):
    samples = corpora_store.samples()
    units = protocol_units(samples, seeds=[1], evaluate_only=["b"])
    for unit in units:
        seen = samples.iloc[np.concatenate([unit.rows["train"], unit.rows["valid"]])]
        assert "b" not in set(seen["corpus"]) or (unit.corpus == "b" and unit.protocol != "loco")
    assert {u.corpus for u in units if u.protocol == "loco"} == {"a", "b", "c"}
    with pytest.raises(ConfigError, match="--evaluate-only: the store has no corpus 'z'"):
        protocol_units(samples, seeds=[1], evaluate_only=["z"])
    declared = samples.assign(evaluate_only=samples["corpus"] == "b")  # as the corpora dataset marks it
    assert [u.rows for u in protocol_units(declared, seeds=[1])][0]["train"].tolist() == units[0].rows["train"].tolist()
