"""NEMu is not public here: tested on small fixtures written in the layout MMER's NEMuDataset reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emocli.core.errors import DatasetError
from emocli.datasets import load_dataset
from emocli.datasets.nemu import NemuAdapter

SIZES = {"train": 4, "valid": 2, "test": 2}
N_LABELS = 5


def nemu_data(names: list[str] | None = None) -> dict:
    import torch

    rng = np.random.default_rng(1)
    data = {}
    for split, n in SIZES.items():
        targets = np.zeros((n, N_LABELS), dtype=np.int64)
        targets[0, [0, 3]] = 1
        if n > 1:
            targets[1, 4] = 1  # the others: no label
        data[split] = {
            "com": [torch.from_numpy(rng.normal(size=(10 + i, 300)).astype(np.float32)) for i in range(n)],
            "lyr": torch.from_numpy(rng.normal(size=(n, 20, 300)).astype(np.float32)),
            "img": torch.from_numpy(rng.normal(size=(n, 1, 512)).astype(np.float32)),  # one vector per song
            "aud": [rng.normal(size=(30, 128)) for _ in range(n)],  # float64 arrays
            "tgt": torch.from_numpy(targets),
        }
    if names is not None:
        data["labels"] = names
    return data


def save(data, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def nemu_file(tmp_path_factory) -> Path:
    return save(nemu_data(), tmp_path_factory.mktemp("nemu") / "nemu.pt")


def test_nemu_samples_and_features(nemu_file):
    samples = load_dataset("nemu", nemu_file.parent)  # the folder holding the one .pt file
    assert samples.labels.task == "multi_label"
    assert samples.labels.names == tuple(f"label_{i}" for i in range(N_LABELS))
    assert any("no label names" in note for note in samples.notes)
    table = samples.table
    assert len(table) == 8 and list(table["sample_id"][:5]) == [
        "train/0",
        "train/1",
        "train/2",
        "train/3",
        "valid/0",
    ]
    assert table["split"].value_counts().to_dict() == {"train": 4, "valid": 2, "test": 2}
    assert [list(x) for x in table["labels"][:3]] == [["label_0", "label_3"], ["label_4"], []]
    features = {p.input_name: p for p in samples.precomputed}
    assert set(features) == {"comments", "lyrics", "image", "audio"}
    summary = {k: (p.name, p.modality, p.kind, p.dim) for k, p in features.items()}
    assert summary == {
        "comments": ("comments", "text", "sequence", 300),
        "lyrics": ("lyrics", "text", "sequence", 300),
        "image": ("image", "visual", "vector", 512),
        "audio": ("audio", "audio", "sequence", 128),
    }
    comment = features["comments"].values["train/2"]
    assert comment.values.shape == (12, 300) and list(comment.times[:2]) == [0.0, 1.0]
    image = features["image"].values["test/1"]
    assert image.values.shape == (512,) and image.times is None
    assert features["audio"].values["valid/1"].values.dtype == np.float32
    reference = nemu_data()
    assert np.allclose(features["lyrics"].values["valid/1"].values, reference["valid"]["lyr"][1].numpy())
    assert features["audio"].source["file"] == str(nemu_file)


def test_label_names_from_the_file(tmp_path):
    names = ["joy", "sadness", "calm", "anger", "nostalgia"]
    samples = NemuAdapter().load(save(nemu_data(names), tmp_path / "songs.pt"))  # the file as root
    assert samples.labels.names == tuple(names) and samples.notes == []
    assert list(samples.table["labels"].iloc[0]) == ["joy", "anger"]


def test_label_names_from_a_vocabulary(tmp_path):
    data = nemu_data()
    data["dict"] = {"tgt": {"<blank>": 0, "b": 2, "a": 1, "e": 5, "d": 4, "c": 3}}
    samples = NemuAdapter().load(save(data, tmp_path / "songs.pt"))
    assert samples.labels.names == ("a", "b", "c", "d", "e")


def test_file_option_and_folder_search(tmp_path, nemu_file):
    folder = tmp_path / "two"
    save(nemu_data(), folder / "a.pt")
    save(nemu_data(), folder / "b.pt")
    with pytest.raises(DatasetError, match="expected one NEMu data file .* found a.pt, b.pt"):
        NemuAdapter().load(folder)
    assert len(NemuAdapter(file="b.pt").load(folder).table) == 8
    with pytest.raises(DatasetError, match="NEMu data file does not exist"):
        NemuAdapter(file="c.pt").load(folder)
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match="found none"):
        NemuAdapter().load(tmp_path / "none")


def _set_target(data):
    data["valid"]["tgt"][1, 2] = 2


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.pop("test"), r"missing split\(s\) test"),
        (lambda d: d["train"].pop("aud"), r"data\['train'\] lacks aud"),
        (_set_target, r"data\['valid'\] song 1: 'tgt' should be a multi-hot 0/1 vector"),
        (lambda d: d["test"]["com"].pop(), r"data\['test'\]\['com'\] has 1 songs but 'tgt' has 2"),
        (lambda d: d["train"]["aud"].__setitem__(2, np.zeros((30, 64))), "'aud' has dim 64, others 128"),
        (
            lambda d: d["train"].__setitem__("img", d["train"]["img"].repeat(1, 2, 1)),
            "'img' should be one vector",
        ),
        (lambda d: d.__setitem__("labels", ["a", "b"]), "names 2 labels but 'tgt' vectors have 5"),
    ],
)
def test_malformed_file(tmp_path, edit, problem):
    data = nemu_data()
    edit(data)
    path = save(data, tmp_path / "nemu.pt")
    with pytest.raises(DatasetError, match=problem) as error:
        NemuAdapter().load(path)
    assert error.value.path == path


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "nemu.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot read the NEMu file"):
        NemuAdapter().load(path)
    save([1, 2], path)
    with pytest.raises(DatasetError, match="expected a dict"):
        NemuAdapter().load(path)


def test_module_imports_no_torch():
    code = "import sys, emocli.datasets.nemu; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
