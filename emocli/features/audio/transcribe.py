"""Speech to timed text with Whisper: the language spoken and segments (start, end, text) that serve as
subtitle cues (`emocli.core.types.Cue`).

Decoding is transformers' `WhisperForConditionalGeneration.generate` with timestamps, on the same
weights the `whisper` extractor reads (an offline package converted once, a hub id or a local folder):
short audio as one 30-s window, longer audio with transformers' sequential long-form algorithm, which
moves its 30-s window to the last timestamp it predicted. Greedy decoding by default (`num_beams=1`).
transformers rather than CTranslate2/faster-whisper: no extra dependency for the same result on these
weights; on this project's CPU CTranslate2 decoded 1.1-1.8x faster per CPU-second (docs/FEATURES.md).

The input is always padded to Whisper's 30-s window: decoding from the cut input the feature extractor
may use makes Whisper repeat itself (measured on RAVDESS: the sentence several times over).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from emocli.core.errors import ConfigError
from emocli.core.types import Cue
from emocli.features.audio.encoders import torch_device
from emocli.features.audio.io import load_audio
from emocli.features.audio.whisper import WHISPER_RATE
from emocli.features.audio.whisper_weights import converted_whisper_dir, offline_whisper
from emocli.features.checkpoints import load_failure, resolve_checkpoint


@dataclass(frozen=True)
class Transcript:
    """What was said: the language (an ISO 639-1 code such as "en") and timed segments, in seconds from the
    start of the file (not of the segment transcribed)."""

    language: str
    cues: tuple[Cue, ...]

    @property
    def text(self) -> str:
        return " ".join(cue.text for cue in self.cues)


class Transcriber:
    """Transcribes audio files or segments of them; the model is loaded once, on first use.

    `language` fixes the language (a code: "en", "de", ...) instead of detecting it from the first 30 s;
    `task="translate"` makes a multilingual model write English.
    """

    def __init__(
        self,
        model: str = "whisper-base",
        language: str | None = None,
        task: Literal["transcribe", "translate"] = "transcribe",
        num_beams: int = 1,
        device: Literal["cpu", "cuda", "auto"] = "auto",
        revision: str | None = None,
    ):
        self.name, self.language, self.task, self.num_beams = model, language, task, num_beams
        self.device, self.revision = device, revision
        self._offline = offline_whisper(model)
        if self._offline is None:
            self._location, self._local = resolve_checkpoint(model, "Whisper model")
        self._model = None
        self._tokenizer = None
        self._mel = None

    def _load(self) -> None:
        import torch
        from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

        location = str(converted_whisper_dir(self._offline.name)) if self._offline else self._location
        try:
            model = WhisperForConditionalGeneration.from_pretrained(
                location, revision=self.revision, dtype=torch.float32, use_safetensors=True
            )
            self._tokenizer = AutoTokenizer.from_pretrained(location, revision=self.revision, trust_remote_code=False)
        except (OSError, ValueError) as error:
            local = self._offline is not None or self._local
            raise load_failure(error, self.name, location, local, "Whisper model") from error
        generation = model.generation_config
        if self.language is not None and not generation.is_multilingual and self.language != "en":
            raise ConfigError(f"{self.name} is English-only: it cannot transcribe language {self.language!r}")
        if self.language is not None and generation.is_multilingual and f"<|{self.language}|>" not in generation.lang_to_id:
            raise ConfigError(f"{self.name} does not know language {self.language!r}")
        self._model = model.to(torch_device(self.device)).eval()
        self._mel = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins, sampling_rate=WHISPER_RATE)

    def transcribe(
        self, path: str | os.PathLike, start_s: float | None = None, end_s: float | None = None
    ) -> Transcript:
        """The language and timed text of `path` (or of its segment [start_s, end_s) seconds).

        Raises ExtractionError naming the file for audio that cannot be read.
        """
        import torch

        if self._model is None:
            self._load()
        signal, _ = load_audio(path, sample_rate=WHISPER_RATE, start_s=start_s, end_s=end_s)
        long_form = len(signal) > self._mel.n_samples
        inputs = self._mel(
            signal, sampling_rate=WHISPER_RATE, return_tensors="pt", return_attention_mask=True,
            # long-form generation takes the whole log-mel with its mask; short audio is padded to 30 s
            **({"padding": "longest", "truncation": False} if long_form else {}),
        )
        features = inputs.input_features.to(self._model.device)
        language = self.language or self._detect_language(features)
        options: dict[str, Any] = {"language": language, "task": self.task} if self._multilingual else {}
        if long_form:
            options["attention_mask"] = inputs.attention_mask.to(self._model.device)
        with torch.inference_mode(), _quiet_generation():
            output = self._model.generate(
                features, return_timestamps=True, return_segments=True, num_beams=self.num_beams, **options,
            )
        offset, duration = float(start_s or 0.0), len(signal) / WHISPER_RATE
        cues = []
        for segment in output["segments"][0]:
            text = self._tokenizer.decode(segment["tokens"], skip_special_tokens=True).strip()
            if text:
                # Whisper's timestamps may run past the audio (a 3.3-s clip "ends" at 4.16 s): kept within it
                start = min(float(segment["start"]), duration)
                end = min(max(float(segment["end"]), start + 0.02), duration)
                cues.append(Cue(round(offset + start, 3), round(offset + max(end, start), 3), text))
        return Transcript(language, tuple(cues))

    @property
    def _multilingual(self) -> bool:
        return bool(self._model.generation_config.is_multilingual)

    def _detect_language(self, features) -> str:
        """Whisper's language token for the first 30 s (English for an English-only model)."""
        import torch

        if not self._multilingual:
            return "en"
        with torch.inference_mode():
            token = int(self._model.detect_language(features[..., : self._mel.nb_max_frames])[0])
        return self._tokenizer.convert_ids_to_tokens(token).strip("<|>")


def transcribe(
    path: str | os.PathLike, start_s: float | None = None, end_s: float | None = None, model: str = "whisper-base",
    language: str | None = None,
) -> Transcript:
    """One file (or segment) transcribed; use a `Transcriber` for many, so the model loads once."""
    return Transcriber(model, language=language).transcribe(path, start_s, end_s)


@contextlib.contextmanager
def _quiet_generation() -> Iterator[None]:
    """Whisper's own `generate` hands its suppress-token arguments to the shared one beside a generation
    config, which then warns that callers should not do so: a notice for transformers, not for our users."""
    logger = logging.getLogger("transformers.generation.utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
