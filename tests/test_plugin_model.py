"""A fifth model is one file: a configuration, a class and its registration, installed as a plugin through
the `emocli.models` entry point. With no other edit it trains, evaluates and predicts through the CLI,
and `emo models` lists it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from plugins import write_plugin

from emocli.runs import layout

TOY_MODEL = '''
"""Toy: mean-pooled audio features and a two-layer head."""
from torch import nn

from emocli.models.base import EmotionModel, ModelConfig, ModelOutput
from emocli.models.objectives import ClassificationObjective
from emocli.models.registry import register_model


class ToyConfig(ModelConfig):
    hidden: int = 16


@register_model(
    name="toy", title="Toy: mean-pooled inputs and a two-layer head", paper="this test", task="single_label",
    input_unit="utterance", modalities=("audio",), input_kinds=("vector", "sequence"), config_class=ToyConfig,
    objective=ClassificationObjective,
)
class Toy(EmotionModel):
    def __init__(self, config):
        super().__init__(config)
        width = config.modalities["audio"].dim
        self.net = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.num_classes))

    def forward(self, inputs, masks=None):
        x = inputs["audio"]
        if x.dim() == 3:  # a sequence: the mean of its real frames
            real = masks["audio"].unsqueeze(-1).to(x.dtype)
            x = (x * real).sum(1) / real.sum(1)
        return ModelOutput(self.net(x))
'''


def tone(path, frequency: float, seconds: float = 1.0, rate: int = 16000):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * frequency * t), rate)
    return path


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    site = write_plugin(root / "site", "emo-toy-model", "emocli.models", {"toy": "emocli_test_plugin_toy"},
                        {"emocli_test_plugin_toy": TOY_MODEL})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    return root, env


def emo(env, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "emocli", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_a_plugin_model_trains_evaluates_and_predicts_through_the_cli(plugin_env):
    root, env = plugin_env
    rows = []
    for k in range(24):
        label = ("low", "high")[k % 2]
        path = tone(root / f"clip{k}.wav", (220.0 if label == "low" else 880.0) * (1 + 0.02 * (k // 2)))
        rows.append({"audio": path.name, "label": label, "speaker": f"s{k % 6}", "fold": k % 3})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    assert "toy" in emo(env, "models", "--no-count").stdout
    emo(env, "extract", "--dataset", "manifest", "--root", str(manifest), "--audio", "mfcc", "--out", str(root / "store"),
        "--workers", "0", "--quiet")
    emo(env, "train", "toy", "--features", str(root / "store"), "--out", str(root / "runs"), "--name", "t",
        "--folds", "0", "--set", "epochs=20", "--set", "optimizer.lr=1e-2")
    unit = layout.unit_dir(root / "runs" / "toy-manifest-t", 1, 0)
    assert layout.read_json(unit / layout.CONFIG)["model_name"] == "toy"
    assert layout.read_json(unit / layout.TEST_METRICS)["metrics"]["accuracy"] >= 0.75  # tones an octave apart

    assert "reproduces test_metrics.json" in " ".join(emo(env, "evaluate", str(unit)).stdout.split())
    new = tone(root / "new.wav", 900.0)
    out = root / "predictions.csv"
    emo(env, "predict", str(unit), str(new), "--output", str(out), "--quiet")
    with open(out) as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["label"] == "high"
