"""Feature store -> splits and batches (emocli/data/), on tiny synthetic stores.

`make_store` is shared with the other training tests: an easy, separable synthetic dataset written
through the store's ordinary path (precomputed features), single- or multi-label, with speakers, folds
and optionally dialogues.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emocli.core.errors import ConfigError
from emocli.core.samples import PrecomputedFeatures, SampleSet
from emocli.core.types import Features, LabelMap, real_utterances
from emocli.data.batches import Collator, train_loader
from emocli.data.inputs import select_inputs, store_label_map
from emocli.data.splits import make_splits
from emocli.data.tables import load_data
from emocli.features.store import FeatureStore
from emocli.models.registry import get_model

CLASSES = ("calm", "happy", "sad")


def make_store(
    path: Path,
    *,
    n: int = 96,
    task: str = "single_label",
    dialogues: bool = False,
    splits: bool = False,
    kinds: tuple[str, str] = ("sequence", "sequence"),
    seed: int = 0,
    noise: float = 0.5,
) -> FeatureStore:
    """n samples of 3 classes; audio [T, 6] and visual [T, 4] (or vectors) whose mean encodes the class.

    Speakers s0..s11, three folds of four speakers (fold = speaker // 4);
    `splits`: the split column says train (speakers 0-7) / test (8-11), no valid split;
    `dialogues`: dialogues of 4 utterances, speakers alternating within each, folds by dialogue.
    """
    rng = np.random.default_rng(seed)
    rows, audio, visual = [], {}, {}
    centers_a = rng.normal(0, 1, (3, 6)) * 2
    centers_v = rng.normal(0, 1, (3, 4)) * 2
    for i in range(n):
        y = i % 3
        sid = f"u{i:04d}"
        speaker = (i // 3) % 12
        row = {
            "sample_id": sid,
            "speaker": f"s{speaker}",
            "fold": speaker // 4,
            "split": ("train" if speaker < 8 else "test") if splits else pd.NA,
        }
        if dialogues:
            row.update(dialogue_id=f"d{i // 4:03d}", position=i % 4, speaker=f"p{i % 2}", fold=(i // 4) % 3)
        if task == "single_label":
            row.update(label=CLASSES[y], labels=[])
        else:
            row.update(label=pd.NA, labels=[CLASSES[y]] + ([CLASSES[(y + 1) % 3]] if i % 2 else []))
        rows.append(row)
        t = 4 + i % 4
        a = centers_a[y] + rng.normal(0, noise, (t, 6))
        v = centers_v[y] + rng.normal(0, noise, (t, 4))
        times = np.arange(t) * 0.1
        audio[sid] = Features(a, times) if kinds[0] == "sequence" else Features(a.mean(0))
        visual[sid] = Features(v, times) if kinds[1] == "sequence" else Features(v.mean(0))
    table = pd.DataFrame(rows)
    precomputed = [
        PrecomputedFeatures("toy-audio", "audio", kinds[0], 6, audio, {"file": "synthetic", "seed": seed}),
        PrecomputedFeatures("toy-visual", "visual", kinds[1], 4, visual, {"file": "synthetic", "seed": seed}),
    ]
    sample_set = SampleSet(
        dataset="toy",
        root=path,
        table=table,
        labels=LabelMap(CLASSES, task),
        precomputed=precomputed,
    )
    store = FeatureStore(path)
    store.extract(sample_set, [], workers=0, progress=False)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    return make_store(tmp_path_factory.mktemp("store"), n=48)


def test_select_inputs_picks_the_only_fit_and_honours_choices(store):
    inputs = select_inputs(store, get_model("cfnsr"))
    assert set(inputs) == {"audio", "visual"}
    assert inputs["audio"].dim == 6 and inputs["audio"].kind == "sequence"
    assert inputs["audio"].extractor_spec["extractor"] == "precomputed-toy-audio"
    only = select_inputs(store, get_model("cfnsr"), modalities=["audio"], choices={"audio": "precomputed-toy-audio"})
    assert set(only) == {"audio"}
    with pytest.raises(ConfigError, match="no such feature set"):
        select_inputs(store, get_model("cfnsr"), choices={"audio": "opensmile"})
    with pytest.raises(ConfigError, match="has no text features"):
        select_inputs(store, get_model("smile"), modalities=["text"])


def test_load_data_joins_features_and_labels(store):
    label_map = store_label_map(store)
    assert label_map.names == CLASSES
    data = load_data(store, select_inputs(store, get_model("cfnsr")), label_map)
    assert len(data) == 48
    assert data.targets.dtype == np.int64
    row = 7
    assert data.targets[row] == CLASSES.index(data.samples["label"][row])
    assert data.features["audio"][row].shape[1] == 6


def test_carved_validation_keeps_speakers_whole_and_is_reproducible(store):
    samples = store.samples()
    a = make_splits(samples, fold=1, seed=3, valid_fraction=0.25)
    b = make_splits(samples, fold=1, seed=3, valid_fraction=0.25)
    c = make_splits(samples, fold=1, seed=4, valid_fraction=0.25)
    for name in ("train", "valid", "test"):
        assert np.array_equal(a[name], b[name])
    speakers = {k: set(samples["speaker"].iloc[v]) for k, v in a.items()}
    assert speakers["test"] == {"s4", "s5", "s6", "s7"}  # fold 1
    assert not speakers["valid"] & speakers["train"] and not speakers["valid"] & speakers["test"]
    assert len(speakers["valid"]) == 2  # a quarter of the 8 remaining speakers
    assert sorted(np.concatenate(list(a.values()))) == list(range(len(samples)))
    assert not np.array_equal(a["valid"], c["valid"]) or not np.array_equal(a["train"], c["train"])


def test_split_column_with_no_valid_split_carves_one_from_train(tmp_path):
    samples = make_store(tmp_path, n=48, splits=True).samples()
    s = make_splits(samples, fold=None, seed=0, valid_fraction=0.25)
    assert set(samples["split"].iloc[s["test"]]) == {"test"}
    assert set(samples["split"].iloc[s["valid"]]) == {"train"}
    assert len(s["valid"]) and len(s["train"])
    with pytest.raises(ConfigError, match="not one of the dataset's folds"):
        make_splits(samples, fold=9, seed=0, valid_fraction=0.1)


def test_utterance_batches_pad_sequences_with_masks(store):
    data = load_data(store, select_inputs(store, get_model("cfnsr")), store_label_map(store))
    batch = Collator(data, conversation=False)(list(range(4)))
    lengths = [len(data.features["audio"][r]) for r in range(4)]
    assert batch.inputs["audio"].shape == (4, max(lengths), 6)
    assert batch.masks["audio"].sum(1).tolist() == lengths
    assert torch.all(batch.inputs["audio"][~batch.masks["audio"]] == 0)
    assert batch.targets.tolist() == data.targets[:4].tolist()


def test_dialogue_batches_group_order_and_mask_utterances(tmp_path):
    store = make_store(tmp_path, n=22, dialogues=True, kinds=("vector", "vector"))
    data = load_data(store, select_inputs(store, get_model("spikemo"), modalities=["audio", "visual"]), store_label_map(store))
    rows = np.random.default_rng(0).permutation(len(data))  # order must not matter
    collate = Collator(data, conversation=True, parties=2)
    from emocli.data.batches import dialogues

    groups = dialogues(data.samples, rows)
    assert sum(len(g) for g in groups) == 22
    for g in groups:
        assert data.samples["dialogue_id"].iloc[g].nunique() == 1
        assert data.samples["position"].iloc[g].tolist() == sorted(data.samples["position"].iloc[g])
    batch = collate(groups[:6])  # the last dialogue (d005) has 2 utterances
    assert batch.inputs["audio"].shape == (6, 4, 6)
    assert batch.masks["utterance"].sum(1).tolist() == [len(g) for g in groups[:6]]
    assert batch.inputs["speaker"][0].tolist() == [0, 1, 0, 1]
    logits = torch.arange(6 * 4).reshape(6, 4, 1).float()
    flat = real_utterances(logits, batch.utterance_mask)
    assert flat.shape == (sum(len(g) for g in groups[:6]), 1)
    assert batch.targets.tolist() == data.targets[batch.rows].tolist()


def test_samples_outside_conversations_are_dialogues_of_one(tmp_path):
    """RAVDESS-like data (no dialogue_id) still feeds conversation models; validation is carved by speaker."""
    store = make_store(tmp_path, n=24, kinds=("vector", "vector"))
    data = load_data(store, select_inputs(store, get_model("spikemo"), modalities=["audio", "visual"]), store_label_map(store))
    from emocli.data.batches import dialogues

    groups = dialogues(data.samples, np.arange(len(data)))
    assert [len(g) for g in groups] == [1] * 24
    splits = make_splits(data.samples, fold=0, seed=1, valid_fraction=0.25, conversation=True)
    speakers = {part: set(data.samples["speaker"].iloc[rows]) for part, rows in splits.items()}
    assert not speakers["train"] & speakers["valid"]
    batch = Collator(data, conversation=True, parties=2)(groups[:5])
    assert batch.inputs["audio"].shape == (5, 1, 6) and batch.masks["utterance"].all()
    assert batch.inputs["speaker"].tolist() == [[0]] * 5  # alone in its dialogue: the first party


def test_multi_label_targets_are_multi_hot(tmp_path):
    store = make_store(tmp_path, n=12, task="multi_label")
    data = load_data(store, select_inputs(store, get_model("smile")), store_label_map(store))
    assert data.targets.shape == (12, 3) and data.targets.dtype == np.float32
    assert data.targets[1].tolist() == [0.0, 1.0, 1.0]  # sample 1: "happy", and being odd, also "sad"
    assert data.targets[4].tolist() == [0.0, 1.0, 0.0]  # sample 4: "happy" alone


def test_train_loader_order_depends_only_on_seed_and_epoch(store):
    data = load_data(store, select_inputs(store, get_model("cfnsr")), store_label_map(store))
    rows = np.arange(len(data))

    def order(seed, epoch):
        loader = train_loader(data, rows, conversation=False, batch_size=8, seed=seed)
        loader.sampler.set_epoch(epoch)
        return np.concatenate([b.rows for b in loader]).tolist()

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert sorted(order(1, 0)) == rows.tolist()
