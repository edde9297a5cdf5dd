from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emocli.core.errors import DatasetError
from emocli.datasets import load_dataset
from emocli.datasets.mosei import EMOTIONS, MoseiAdapter

# ------------------------------------------------------------------------------- (a) the aligned torch file

# HHMPN's preprocessing builds the target vocabulary from a set: the id order is not the documented one.
TGT_VOCAB = {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "sad": 4, "happy": 5, "fear": 6, "anger": 7,
             "disgust": 8, "surprise": 9}  # fmt: skip
SIZES = {"train": 3, "valid": 2, "test": 2}
TARGETS = {
    "train": [[2, 5, 3], [2, 4, 6, 3], [2, 3]],
    "valid": [[2, 9, 3], [2, 7, 8, 3]],
    "test": [[2, 5, 3], [2, 4, 3]],
}


def aligned_data(as_tensors: bool = False) -> dict:
    import torch

    rng = np.random.default_rng(0)
    data = {"dict": {"src": {"<blank>": 0}, "tgt": dict(TGT_VOCAB)}, "settings": {"max_text_seq_len": 60}}
    for split, n in SIZES.items():
        text = rng.normal(size=(n, 60, 300)).astype(np.float32)
        audio = rng.normal(size=(n, 60, 74)).astype(np.float32)
        audio[0, 5, 3] = -np.inf
        visual = rng.normal(size=(n, 60, 35)).astype(np.float32)
        if as_tensors:
            part = {"src-text": torch.from_numpy(text), "src-audio": torch.from_numpy(audio),
                    "src-visual": torch.from_numpy(visual)}  # fmt: skip
        else:
            part = {"src-text": list(text), "src-audio": list(audio), "src-visual": list(visual)}
        part["tgt"] = [list(t) for t in TARGETS[split]]
        data[split] = part
    return data


def save(data, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def aligned_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mosei_aligned")
    save(aligned_data(), root / "train_valid_test.pt")
    return root


def test_aligned_samples_labels_and_features(aligned_root):
    samples = load_dataset("mosei", aligned_root)
    assert samples.labels.task == "multi_label"
    assert samples.labels.names == ("sad", "happy", "fear", "anger", "disgust", "surprise")  # from the file
    table = samples.table
    assert list(table["sample_id"]) == [
        "train/0",
        "train/1",
        "train/2",
        "valid/0",
        "valid/1",
        "test/0",
        "test/1",
    ]
    assert list(table["split"]) == ["train"] * 3 + ["valid"] * 2 + ["test"] * 2
    assert [list(x) for x in table["labels"]] == [
        ["happy"], ["sad", "fear"], [], ["surprise"], ["anger", "disgust"], ["happy"], ["sad"],
    ]  # fmt: skip
    assert table["label"].isna().all()
    by_name = {p.name: p for p in samples.precomputed}
    assert set(by_name) == {"glove", "covarep", "facet"}
    shapes = [(by_name[n].modality, by_name[n].kind, by_name[n].dim) for n in ("glove", "covarep", "facet")]
    assert shapes == [("text", "sequence", 300), ("audio", "sequence", 74), ("visual", "sequence", 35)]
    assert set(by_name["glove"].values) == set(table["sample_id"])
    audio = by_name["covarep"].values["train/0"]
    assert audio.values.shape == (60, 74) and np.isfinite(audio.values).all() and audio.values[5, 3] == 0
    assert list(audio.times[:3]) == [0.0, 1.0, 2.0] and len(audio.times) == 60
    assert by_name["facet"].source["file"] == str(aligned_root / "train_valid_test.pt")
    assert samples.notes == []


def test_aligned_values_match_the_file(aligned_root):
    samples = load_dataset("mosei", aligned_root / "train_valid_test.pt")  # the file itself as root
    reference = aligned_data()
    text = {p.name: p for p in samples.precomputed}["glove"].values["valid/1"].values
    assert np.array_equal(text, reference["valid"]["src-text"][1])


def test_aligned_tensors_and_id_to_name_vocabulary(tmp_path):
    data = aligned_data(as_tensors=True)
    data["dict"]["tgt"] = {i: name for name, i in TGT_VOCAB.items()}
    samples = MoseiAdapter().load(save(data, tmp_path / "train_valid_test.pt").parent)
    assert samples.labels.names == ("sad", "happy", "fear", "anger", "disgust", "surprise")
    assert len(samples.table) == 7


def test_aligned_without_vocabulary_falls_back_with_a_note(tmp_path):
    data = aligned_data()
    del data["dict"]
    samples = MoseiAdapter().load(save(data, tmp_path / "train_valid_test.pt").parent)
    assert samples.labels.names == tuple(f"label_{i}" for i in range(6))
    assert samples.table["labels"].iloc[0] == ["label_1"]
    assert any("label_0" in note for note in samples.notes)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.pop("valid"), "missing split\\(s\\) valid"),
        (lambda d: d["test"].pop("src-visual"), "data\\['test'\\] lacks src-visual"),
        (lambda d: d["train"]["tgt"].append([2, 4, 3]), "has 3 samples but 'tgt' has 4"),
        (lambda d: d["valid"]["tgt"].__setitem__(0, [2, 12, 3]), "label id 12"),
        (lambda d: d["train"]["src-audio"].__setitem__(1, np.zeros((60, 70), np.float32)), "dim 70"),
    ],
)
def test_aligned_malformed_file(tmp_path, edit, problem):
    data = aligned_data()
    edit(data)
    path = save(data, tmp_path / "train_valid_test.pt")
    with pytest.raises(DatasetError, match=problem) as error:
        MoseiAdapter().load(tmp_path)
    assert error.value.path == path


def test_aligned_not_a_torch_file_and_wrong_task(tmp_path, aligned_root):
    (tmp_path / "train_valid_test.pt").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="cannot read the aligned MOSEI file"):
        MoseiAdapter().load(tmp_path)
    with pytest.raises(DatasetError, match="needs the segments layout"):
        MoseiAdapter(task="label6").load(aligned_root)


# --------------------------------------------------------------------- (b) segment index + standard folds


@pytest.fixture(scope="module")
def real(mosei_root):
    return load_dataset("mosei", mosei_root)


@pytest.mark.realdata
def test_real_segments(real):
    table = real.table
    assert len(table) == 23259 and table["sample_id"].is_unique
    assert table["split"].value_counts().to_dict() == {"train": 16327, "test": 4662, "valid": 1871}
    assert table["split"].isna().sum() == 399  # segments of videos in no standard fold
    assert (table["split"].fillna("none") == table["csv_split"].fillna("none")).all()
    assert not any("differs" in note for note in real.notes)
    assert real.labels.names == EMOTIONS and real.labels.task == "single_label"
    counts = {"happy": 14567, "sad": 3782, "anger": 2730, "disgust": 1291, "fear": 452, "surprise": 437}
    assert table["label"].value_counts().to_dict() == counts
    first = table.iloc[0]
    assert first["sample_id"] == "--qXJuDtHPw[0]" and first["video_id"] == "--qXJuDtHPw"
    assert first["start_s"] == pytest.approx(23.199) and first["end_s"] == pytest.approx(30.325)
    assert first["split"] == "valid"
    assert (table["end_s"] >= table["start_s"]).all()
    assert table.loc[table["video_id"] == "286943", "split"].eq("test").all()  # numeric ids stay text
    assert table["video_path"].isna().all() and real.precomputed == []


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("task", "counts"),
    [
        ("label7", {"weakly_positive": 7576, "neutral": 5100, "weakly_negative": 3609, "positive": 3225,
                    "negative": 2253, "highly_negative": 821, "highly_positive": 675}),
        ("label2a", {"non_negative": 16576, "negative": 6683}),
        ("label2b", {"positive": 11476, "negative": 6683, "neutral": 5100}),
    ],
)  # fmt: skip
def test_real_sentiment_tasks(mosei_root, task, counts):
    samples = MoseiAdapter(task=task).load(mosei_root)
    assert samples.table["label"].value_counts().to_dict() == counts
    assert set(samples.labels.names) == set(counts)


CSV_HEADER = ",file,index,start,end,label2a,label2b,label6,label7,split\n"
CSV_ROWS = [
    "0,vidA,0,0.5,3.0,1,1,0,1,0",
    "1,vidA,1,3.5,6.0,0,-1,1,-2,0",
    "2,123456,0,1.0,2.0,1,0,3,0,2",
    "3,vidB,0,0.0,4.0,1,1,5,2,1",
    "4,vidC,0,2.0,5.0,0,-1,4,-3,3",
]
FOLDS = {"standard_train_fold": ["vidA"], "standard_valid_fold": ["vidB"], "standard_test_fold": [123456]}


def segments_root(root: Path, rows=CSV_ROWS, folds=FOLDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "CMU_MOSEI_Labels.csv").write_text(CSV_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    if folds is not None:
        (root / "cmu_mosei_std_folds.json").write_text(json.dumps(folds), encoding="utf-8")
    return root


def test_small_segments(tmp_path):
    root = segments_root(tmp_path / "mosei")
    (root / "Raw" / "Videos").mkdir(parents=True)
    (root / "Raw" / "Audio").mkdir(parents=True)
    video = root / "Raw" / "Videos" / "vidA.mp4"
    audio = root / "Raw" / "Audio" / "vidA.wav"
    other = root / "Raw" / "Videos" / "vidB.mp4"
    for path in (video, audio, other):
        path.write_bytes(b"")
    samples = MoseiAdapter().load(root)
    table = samples.table.set_index("sample_id")
    assert list(table.index) == ["vidA[0]", "vidA[1]", "123456[0]", "vidB[0]", "vidC[0]"]
    assert list(table["split"].fillna("none")) == ["train", "train", "test", "valid", "none"]
    assert list(table["label"]) == ["happy", "sad", "surprise", "fear", "disgust"]
    assert table.loc["vidA[1]", "start_s"] == 3.5 and table.loc["vidA[1]", "end_s"] == 6.0
    assert table.loc["vidA[0]", "video_path"] == str(video.resolve())
    assert table.loc["vidA[0]", "audio_path"] == str(audio.resolve())
    assert table.loc["vidB[0]", "audio_path"] == table.loc["vidB[0]", "video_path"] == str(other.resolve())
    assert table[["video_path", "audio_path"]].loc["vidC[0]"].isna().all()
    label7 = MoseiAdapter(task="label7").load(root).table
    assert list(label7["label"]) == ["weakly_positive", "negative", "neutral", "positive", "highly_negative"]
    label2a = MoseiAdapter(task="label2a").load(root).table
    assert list(label2a["label"]) == ["non_negative", "negative", "non_negative", "non_negative", "negative"]


def test_folds_disagreeing_with_the_csv_are_noted(tmp_path):
    folds = {**FOLDS, "standard_train_fold": ["vidA", "vidC"]}
    samples = MoseiAdapter().load(segments_root(tmp_path, folds=folds))
    assert samples.table.set_index("sample_id").loc["vidC[0]", "split"] == "train"
    assert any("1 segments have a split" in note and "row 5" in note for note in samples.notes)


def test_without_folds_the_csv_split_is_used(tmp_path):
    samples = MoseiAdapter().load(segments_root(tmp_path, folds=None))
    assert list(samples.table["split"].fillna("none")) == ["train", "train", "test", "valid", "none"]
    assert any("cmu_mosei_std_folds.json not found" in note for note in samples.notes)


@pytest.mark.parametrize(
    ("rows", "problem", "row"),
    [
        (CSV_ROWS[:2] + ["2,vidB,0,1.0,2.0,1,0,7,0,2"], "label6 '7' is not one of", 3),
        (CSV_ROWS[:1] + ["1,vidA,0,3.5,6.0,0,-1,1,-2,0"], r"segment vidA\[0\] appears twice", 2),
        (CSV_ROWS[:1] + ["1,vidA,1,6.0,3.5,0,-1,1,-2,0"], "ends .* before it starts", 2),
        (CSV_ROWS[:1] + ["1,vidA,1,soon,3.5,0,-1,1,-2,0"], "start 'soon' is not a number", 2),
        (["0,vidA,x,0.5,3.0,1,1,0,1,0"], "index 'x' is not a non-negative integer", 1),
    ],
)
def test_bad_segment_rows_name_the_row(tmp_path, rows, problem, row):
    root = segments_root(tmp_path, rows=rows)
    with pytest.raises(DatasetError, match=problem) as error:
        MoseiAdapter().load(root)
    assert error.value.path == root / "CMU_MOSEI_Labels.csv" and error.value.row == row


def test_missing_column_and_missing_files(tmp_path):
    (tmp_path / "CMU_MOSEI_Labels.csv").write_text("file,index,start,end\nvidA,0,0.5,3.0\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="missing column.*label2a"):
        MoseiAdapter().load(tmp_path)
    with pytest.raises(DatasetError, match="neither a folder nor the aligned .pt file"):
        MoseiAdapter().load(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither train_valid_test.pt nor CMU_MOSEI_Labels.csv"):
        MoseiAdapter().load(tmp_path / "empty")
    with pytest.raises(DatasetError, match="aligned file train_valid_test.pt is not in this folder"):
        MoseiAdapter(layout="aligned").load(tmp_path / "empty")


def test_bad_folds_file(tmp_path):
    root = segments_root(tmp_path, folds={"standard_train_fold": ["vidA"], "standard_test_fold": []})
    with pytest.raises(DatasetError, match="missing fold.*standard_valid_fold"):
        MoseiAdapter().load(root)
    segments_root(tmp_path, folds={**FOLDS, "standard_valid_fold": ["vidA"]})
    with pytest.raises(DatasetError, match="'vidA' is in both train and valid"):
        MoseiAdapter().load(root)


# ------------------------------------------------------------------------------------ (c) SDK .csd files


def write_csd(path: Path, name: str, videos: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        group = handle.create_group(name)
        data = group.create_group("data")
        for video, (features, intervals) in videos.items():
            entry = data.create_group(video)
            entry.create_dataset("features", data=features)
            entry.create_dataset("intervals", data=intervals)
        metadata = group.create_group("metadata")
        metadata.attrs["root name"] = name
    return path


def test_csd_features_are_averaged_per_segment(tmp_path):
    root = segments_root(tmp_path / "mosei")
    frames = np.arange(8, dtype=np.float64)[:, None] * np.ones((1, 74))
    frames[1, 0] = -np.inf
    intervals = np.stack([np.arange(8), np.arange(8) + 1.0], axis=1)  # [i, i+1) seconds
    write_csd(root / "CMU_MOSEI_COVAREP.csd", "COVAREP", {"vidA": (frames, intervals)})
    facet = np.ones((2, 35))
    write_csd(
        root / "CMU_MOSEI_VisualFacet42.csd",
        "FACET 4.2",
        {"vidB": (facet, np.array([[0.0, 1.0], [1.0, 2.0]]))},
    )
    samples = MoseiAdapter().load(root)
    by_name = {p.name: p for p in samples.precomputed}
    assert set(by_name) == {"covarep", "facet"}
    covarep = by_name["covarep"]
    assert (covarep.modality, covarep.kind, covarep.dim) == ("audio", "vector", 74)
    assert set(covarep.values) == {"vidA[0]", "vidA[1]"}
    # segment [0.5, 3.0] overlaps frames 0, 1, 2 (frame 1's -inf counts as 0 in column 0)
    assert covarep.values["vidA[0]"].values[0] == pytest.approx((0 + 0 + 2) / 3)
    assert covarep.values["vidA[0]"].values[1] == pytest.approx((0 + 1 + 2) / 3)
    assert covarep.values["vidA[1]"].values[1] == pytest.approx((3 + 4 + 5) / 3)  # [3.5, 6.0]: frames 3, 4, 5
    assert covarep.values["vidA[0]"].times is None
    assert by_name["facet"].modality == "visual" and by_name["facet"].values["vidB[0]"].values.shape == (35,)
    assert any("CMU_MOSEI_COVAREP.csd: 3 segments have no frames" in note for note in samples.notes)
    assert MoseiAdapter(read_csd=False).load(root).precomputed == []


def test_csd_frames_out_of_order_average_the_same(tmp_path):
    root = segments_root(tmp_path / "mosei")
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(50, 74))
    starts = np.sort(rng.uniform(0, 7, size=50))
    intervals = np.stack([starts, starts + 0.3], axis=1)
    write_csd(root / "CMU_MOSEI_COVAREP.csd", "COVAREP", {"vidA": (frames, intervals)})
    ordered = {p.name: p for p in MoseiAdapter().load(root).precomputed}["covarep"].values
    order = rng.permutation(50)
    write_csd(root / "CMU_MOSEI_COVAREP.csd", "COVAREP", {"vidA": (frames[order], intervals[order])})
    shuffled = {p.name: p for p in MoseiAdapter().load(root).precomputed}["covarep"].values
    for sample_id in ("vidA[0]", "vidA[1]"):
        mask = (intervals[:, 0] < {"vidA[0]": 3.0, "vidA[1]": 6.0}[sample_id]) & (
            intervals[:, 1] > {"vidA[0]": 0.5, "vidA[1]": 3.5}[sample_id]
        )
        expected = frames[mask].mean(axis=0)
        assert np.allclose(ordered[sample_id].values, expected, atol=1e-5)
        assert np.allclose(shuffled[sample_id].values, expected, atol=1e-5)


def test_csd_labels_give_the_multi_label_task(tmp_path):
    root = segments_root(tmp_path / "mosei")
    # [sentiment, happy, sad, anger, surprise, disgust, fear] per labelled segment
    write_csd(
        root / "CMU_MOSEI_Labels.csd",
        "All Labels",
        {
            "vidA": (np.array([[1.0, 0.3, 0, 0, 0, 0, 0.6], [-1.0, 0, 1.0, 0.5, 0, 0, 0]]),
                     np.array([[0.5, 3.0], [3.5, 6.0]])),
            "vidB": (np.zeros((1, 7)), np.array([[0.0, 4.0]])),
        },
    )  # fmt: skip
    samples = MoseiAdapter(task="emotions").load(root)
    assert samples.labels.task == "multi_label" and samples.labels.names == EMOTIONS
    table = samples.table.set_index("sample_id")
    assert list(table.index) == ["vidA[0]", "vidA[1]", "vidB[0]"]
    assert [list(x) for x in table["labels"]] == [["happy", "fear"], ["sad", "anger"], []]
    assert any("2 segments have no interval" in note for note in samples.notes)
    strict = MoseiAdapter(task="emotions", emotion_threshold=0.5).load(root).table
    assert [list(x) for x in strict["labels"]] == [["fear"], ["sad"], []]
    assert samples.precomputed == []  # the label sequence is not a feature


def test_emotions_on_segments_need_the_label_csd(tmp_path):
    with pytest.raises(DatasetError, match="needs CMU_MOSEI_Labels.csd"):
        MoseiAdapter(task="emotions").load(segments_root(tmp_path))


def test_malformed_csd(tmp_path):
    root = segments_root(tmp_path / "mosei")
    write_csd(root / "CMU_MOSEI_COVAREP.csd", "COVAREP", {"vidA": (np.zeros((3, 74)), np.zeros((2, 2)))})
    with pytest.raises(DatasetError, match="do not pair up"):
        MoseiAdapter().load(root)
    (root / "CMU_MOSEI_COVAREP.csd").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not an HDF5 computational sequence"):
        MoseiAdapter().load(root)


def test_module_imports_no_torch():
    code = "import sys, emocli.datasets.mosei; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
