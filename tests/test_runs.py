"""Run directories (emocli/training/runs.py): weights, checkpoints, RNG states, JSON files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from emocli.core.errors import ConfigError, EmoError
from emocli.runs import layout


class Tiny(torch.nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.a = torch.nn.Linear(2, width)
        self.b = torch.nn.Linear(width, 1)
        self.register_buffer("state", torch.tensor(1.5))


def test_weights_round_trip_and_strict_loading(tmp_path):
    model, other = Tiny(), Tiny()
    path = tmp_path / layout.WEIGHTS
    layout.save_weights(model, path, {"epoch": "3"})
    layout.load_weights(other, path)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigError, match="do not fit"):
        layout.load_weights(Tiny(width=4), path)
    renamed = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(ConfigError, match="missing|unexpected"):
        layout.load_weights(renamed, path)
    with pytest.raises(EmoError, match="no weights"):
        layout.load_weights(model, tmp_path / "absent.safetensors")


def test_checkpoint_loads_with_weights_only_and_restores_every_rng(tmp_path):
    model = Tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model.b(model.a(torch.ones(4, 2))).sum()
    loss.backward()
    optimizer.step()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 2, "rng": [layout.rng_state()]}
    path = tmp_path / layout.CHECKPOINT
    layout.save_checkpoint(path, state)
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    loaded = layout.load_checkpoint(path)  # weights_only=True inside: plain containers and tensors only
    assert loaded["epoch"] == 2
    fresh = torch.optim.Adam(Tiny().parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    layout.set_rng_state(loaded["rng"][0])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / layout.CHECKPOINT
    torch.save({"module": Tiny()}, path)  # a whole module: not loadable with weights_only
    with pytest.raises(EmoError, match="cannot resume from this checkpoint: holds more than tensors"):
        layout.load_checkpoint(path)
    assert layout.load_checkpoint(tmp_path / "none.pt") is None


def test_jsonl_append_read_truncate(tmp_path):
    path = tmp_path / layout.METRICS
    for epoch in range(1, 5):
        layout.append_jsonl(path, {"epoch": epoch, "value": np.float32(0.5)})
    assert [r["epoch"] for r in layout.read_jsonl(path)] == [1, 2, 3, 4]
    layout.truncate_jsonl(path, 2)
    assert layout.read_jsonl(path) == [{"epoch": 1, "value": 0.5}, {"epoch": 2, "value": 0.5}]


def test_unit_directories(tmp_path):
    unit = layout.unit_dir(tmp_path, 3, None)
    assert unit == tmp_path / "seed=3" / "fold=none"
    assert layout.parse_unit(unit) == (3, None)
    assert layout.parse_unit(layout.unit_dir(tmp_path, 1, 4)) == (1, 4)
    with pytest.raises(EmoError, match="not a run directory"):
        layout.units(tmp_path)
    for u in (unit, layout.unit_dir(tmp_path, 1, 4)):
        u.mkdir(parents=True)
        layout.write_json(u / layout.CONFIG, {"x": 1})
    assert layout.units(tmp_path) == [layout.unit_dir(tmp_path, 1, 4), unit]
    assert layout.units(unit) == [unit]
    with pytest.raises(EmoError, match="not valid JSON"):
        (unit / "bad.json").write_text("{")
        layout.read_json(unit / "bad.json")
