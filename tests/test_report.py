"""emocli.runs.card: real PNGs on the Agg canvas, and the model card's sections and flags."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from emocli.runs.card import plot_confusion_matrix, plot_learning_curves, render_model_card
from emocli.runs.metrics import multi_label_metrics, single_label_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert path.stat().st_size > 5_000, "a plot with axes, lines and text is more than a few bytes"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def _history() -> list[dict]:
    return [
        {"epoch": e, "train": {"loss": 1.0 / e, "weighted_f1": 0.4 + 0.05 * e},
         "valid": {"loss": 1.2 / e + 0.02 * e, "weighted_f1": 0.35 + 0.04 * e - 0.006 * e * e}}
        for e in range(1, 9)
    ]


def test_learning_curves_from_jsonl(tmp_path: Path):
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in _history()) + "\n", encoding="utf-8")
    out = plot_learning_curves(jsonl, tmp_path / "plots" / "curves.png", selection_metric="weighted_f1")
    width, height = _png_size(out)
    assert width > height  # two panels side by side: loss and weighted_f1


def test_learning_curves_flat_keys_loss_only(tmp_path: Path):
    records = [{"epoch": e, "train_loss": 1.0 / e, "valid/loss": 1.1 / e} for e in range(1, 4)]
    width, height = _png_size(plot_learning_curves(records, tmp_path / "loss.png"))
    assert width < 1.6 * height  # one panel


def test_learning_curves_need_a_loss(tmp_path: Path):
    with pytest.raises(ValueError, match="no loss"):
        plot_learning_curves([{"epoch": 1, "note": "nothing"}], tmp_path / "x.png")


def test_confusion_matrix_png(tmp_path: Path):
    names = ["neutral", "calm", "happy", "sad"]
    matrix = [[5, 1, 0, 0], [2, 3, 0, 1], [0, 0, 0, 0], [0, 1, 1, 4]]  # "happy" has no samples
    _png_size(plot_confusion_matrix(matrix, names, tmp_path / "cm.png"))
    _png_size(plot_confusion_matrix(matrix, names, tmp_path / "cm_counts.png", normalize=False, title="fold 1"))
    with pytest.raises(ValueError, match="4×4"):
        plot_confusion_matrix([[1, 2]], names, tmp_path / "bad.png")


# ------------------------------------------------------------------------------------------ model card


def _single_label_runs() -> list[dict]:
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    rng = np.random.default_rng(0)
    return [single_label_metrics(y, rng.random((8, 4)), ["neutral", "calm", "happy", "sad"]) for _ in range(3)]


def _cfnsr_info(**overrides) -> dict:
    info = {
        "name": "cfnsr-ravdess",
        "model": {"name": "cfnsr", "title": "CFN-SR", "paper": "arXiv 2111.02172", "faithful": True},
        "parameters": 26_301_417,
        "task": "single_label",
        "dataset": {"name": "ravdess", "labels": ["neutral", "calm", "happy", "sad"]},
        "features": {
            "audio": {"extractor": "opensmile", "params": {"feature_set": "eGeMAPSv02", "level": "lld"}},
            "visual": "clips",
        },
        "protocol": "standard",
        "selection": {"split": "valid", "metric": "accuracy", "mode": "max"},
        "seeds": [1, 2, 3],
        "folds": [1, 2, 3, 4, 5],
        "results": _single_label_runs(),
    }
    info.update(overrides)
    return info


def test_model_card_sections_and_results():
    card = render_model_card(_cfnsr_info())
    for heading in ("# cfnsr-ravdess", "## Model", "## Data", "## Protocol", "## Seeds and folds",
                    "## Results", "## License"):
        assert heading in card
    assert "26,301,417" in card
    assert "| audio | `opensmile` | feature_set=eGeMAPSv02, level=lld |" in card
    assert "selected on the validation split only" in card
    assert "Seeds: 1, 2, 3" in card and "Folds: 1, 2, 3, 4, 5" in card
    assert "over 3 runs" in card
    assert "| weighted_f1 | " in card and " ± " in card
    assert "| top4_accuracy | 1.0000 ± 0.0000 |" in card  # C = 4: the true class is always in the top 4
    assert "| calm | " in card  # per-class F1 table
    assert "n_samples" not in card
    assert "openSMILE" in card and "research" in card
    assert "CC BY-NC-SA" in card
    assert "test-peeking" not in card.lower()
    assert "Spiking" not in card


def test_model_card_flags_paper_protocol_loudly():
    card = render_model_card(_cfnsr_info(protocol="paper", selection={"split": "test", "metric": "accuracy"}))
    assert "PAPER PROTOCOL (TEST-PEEKING)" in card  # the banner under the title
    assert card.index("TEST-PEEKING") < card.index("## Model")
    assert "Paper protocol (test-peeking)" in card  # and in the protocol section
    # Without a recorded selection split, a paper protocol is assumed to peek.
    assert "TEST-PEEKING" in render_model_card(_cfnsr_info(protocol="paper", selection=None))


def test_model_card_paper_protocol_on_validation_is_not_called_peeking():
    # SMILE's own rule selects on validation BCE: a paper protocol, but not a test-peeking one.
    info = {
        "model": {"name": "smile", "title": "SMILE", "paper": "ICME 2024", "faithful": True},
        "task": "multi_label",
        "dataset": "mosei",
        "protocol": "paper",
        "selection": {"split": "valid", "metric": "loss", "mode": "min"},
        "threshold": 0.35,
        "empty_rule": "zero",
        "seeds": [0],
        "results": [multi_label_metrics(np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.6], [0.1, 0.2]]),
                                        ["joy", "sad"], threshold=0.35)],
        "spiking": {
            "timesteps": 5,
            "firing_rates": {"encoder.lif": 0.0812, "attention.lif": 0.0345},
            "energy": {"snn_mJ": 0.0123, "ann_equivalent_mJ": 0.0561},
        },
    }
    card = render_model_card(info)
    assert "test-peeking" not in card.lower()
    assert "**Paper protocol**" in card
    assert "lowest `loss` on `valid`" in card
    assert "sigmoid output > 0.35" in card
    assert "| jaccard_accuracy | 0.2500 ± 0.0000 |" in card  # test_metrics.py's empty-rule example, one run
    assert "## Spiking activity and energy" in card
    assert "| encoder.lif | 0.0812 |" in card
    assert "compute-only estimate, 45 nm (Horowitz 2014)" in card
    assert "- snn_mJ: 0.0123" in card
    assert "openSMILE" not in card and "CC BY-NC-SA" not in card


def test_best_epoch_ties_go_to_the_earliest():
    from emocli.runs.card import _best_epoch

    points = [(1, 0.5), (2, 0.3), (3, 0.3), (4, 0.4)]
    assert _best_epoch(points, lower_is_better=True) == 2
    assert _best_epoch([(1, 0.5), (2, 0.7), (3, 0.7)], lower_is_better=False) == 2
    assert _best_epoch(None, lower_is_better=True) is None
