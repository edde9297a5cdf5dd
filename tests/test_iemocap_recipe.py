"""The SpikEmo IEMOCAP recipe end to end (pipelines/iemocap-spikemo.toml): IEMOCAP is licensed per user, so
the adapter reads a fixture in the IEMOCAP_full_release layout with real dialogue audio (tones), the recipe
extracts MiniLM text and eGeMAPS audio of each utterance's segment, trains SpikEmo (in miniature) on sessions
1-4 with validation dialogues carved from them, and scores session 5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from test_datasets_iemocap import EVALUATORS, HEADER, evaluation_line, write

from emocli.pipeline import run_pipeline
from emocli.runs import layout

REPO = Path(__file__).resolve().parents[1]
CODES = ("neu", "hap", "sad", "ang", "exc", "fru")
WORDS = {"neu": "It is on the table.", "hap": "That is wonderful news!", "sad": "I miss her so much.",
         "ang": "Stop doing that right now!", "exc": "We won, we really won!", "fru": "This never works."}
TINY_SPIKEMO = [
    "model.model_dim=16", "model.fusion_layers=1", "model.fusion_heads=2", "model.fusion_ffn_dim=32",
    "model.mlp_hidden=16", "model.spike_heads=2", "model.spike_steps=4", "epochs=2", "batch_size=4", "seeds=[1]",
]


def release_with_audio(root: Path, dialogs_per_session: int = 3, turns: int = 6) -> Path:
    """Five sessions of dialogues whose turns alternate speakers; each dialogue's wav holds a tone per turn."""
    rate = 16000
    for session in range(1, 6):
        folder = root / f"Session{session}"
        for d in range(dialogs_per_session):
            dialog = f"Ses0{session}F_impro0{d + 1}"
            rows, signal = [], np.zeros(int(rate * (turns * 1.5 + 1)), dtype=np.float32)
            for t in range(turns):
                code = CODES[(session + d + t) % len(CODES)]
                start, end = 0.5 + 1.5 * t, 1.5 + 1.5 * t
                speaker = "F" if t % 2 == 0 else "M"
                rows.append((start, end, f"{dialog}_{speaker}{t:03d}", code, WORDS[code]))
                times = np.arange(int(rate * (end - start))) / rate
                signal[int(start * rate) : int(start * rate) + len(times)] = 0.3 * np.sin(
                    2 * np.pi * (150 + 60 * CODES.index(code)) * times)
            write(folder / "dialog" / "EmoEvaluation" / f"{dialog}.txt",
                  HEADER + "".join(evaluation_line(s, e, u, c) + EVALUATORS for s, e, u, c, _ in rows))
            write(folder / "dialog" / "transcriptions" / f"{dialog}.txt",
                  "".join(f"{u} [{s:08.4f}-{e:08.4f}]: {text}\n" for s, e, u, _, text in rows))
            wav = folder / "dialog" / "wav" / f"{dialog}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, signal, rate)
    return root


def test_the_spikemo_iemocap_recipe_runs_end_to_end(tmp_path):
    root = release_with_audio(tmp_path / "IEMOCAP_full_release")
    result = run_pipeline(REPO / "pipelines" / "iemocap-spikemo.toml", root=root, out=tmp_path / "out",
                          train_overrides=TINY_SPIKEMO)
    assert [stage.stage for stage in result.stages if stage.status == "done"][:3] == ["extract", "train", "evaluate"]
    unit = layout.unit_dir(result.run_root, 1, None)
    splits = layout.read_json(unit / layout.SPLITS)
    assert splits["test"] and all(sid.startswith("Ses05") for sid in splits["test"])  # session 5 is the test
    assert splits["valid"] and not any(sid.startswith("Ses05") for sid in splits["valid"] + splits["train"])
    metrics = layout.read_json(unit / layout.TEST_METRICS)["metrics"]
    assert metrics["n_samples"] == len(splits["test"]) and 0.0 <= metrics["weighted_f1"] <= 1.0
    config = layout.read_json(unit / layout.CONFIG)
    assert config["model"]["context"] == {"text": "bidirectional", "audio": "bidirectional", "visual": "bidirectional"}
    assert config["train"]["loss"]["weights"] == {"ce": 0.2, "dsc": 0.4, "hgr": 0.4}  # the IEMOCAP script's
