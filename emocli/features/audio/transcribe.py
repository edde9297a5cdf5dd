"""Speech to timed text with Whisper: the language spoken and segments (start, end, text) that serve as
subtitle cues (`emocli.core.types.Cue`).

Two backends decode the same weights:
- `ct2` (default for the offline models): faster-whisper (https://github.com/SYSTRAN/faster-whisper) on
  CTranslate2, the decoder the offline packages were made for, loaded from memory and shared within the
  process (whisper_weights.faster_whisper_model). Its windows are cut into sentences timed by their words
  (`sentences`; word alignment costs about 4 % more). Guards against Whisper's failure modes: a window Whisper
  thinks holds no speech (no-speech probability > NO_SPEECH_LIMIT with a mean log-probability under
  LOG_PROB_FLOOR) is dropped; the tokens decoded per window are capped by its duration (TOKENS_PER_SECOND),
  so a loop on repeated words costs a bounded time; a cue whose own text compresses too well (gzip ratio >
  COMPRESSION_RATIO_LIMIT, Whisper's loop test) is flagged "repetitive", one from a window of low mean
  log-probability "unsure". Decoding is greedy at temperature 0 only: the reference decoder's fallback to
  sampling at higher temperatures makes the same audio give different words from run to run (measured here:
  three runs on one recording, three transcripts), and emo promises the same output for the same input.
  Consecutive windows are decoded without the previous window's text as a prompt, which is what lets one
  loop run into the next window.
- `torch`: transformers' `WhisperForConditionalGeneration.generate` with timestamps, for any transformers
  checkpoint (hub ids, local folders): short audio as one 30-s window, longer audio with transformers'
  sequential long-form algorithm. Greedy decoding by default (`num_beams=1`). Its input is padded to the
  30-s window: decoding a cut input makes Whisper repeat itself.

`task="translate"` makes a multilingual model write English (Whisper's own translation, offline).
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emocli.core.errors import ConfigError
from emocli.core.types import Cue
from emocli.features.audio.encoders import torch_device
from emocli.features.audio.io import load_audio
from emocli.features.audio.whisper import WHISPER_RATE
from emocli.features.audio.whisper_weights import converted_whisper_dir, offline_whisper
from emocli.features.checkpoints import load_failure, resolve_checkpoint

# The thresholds of OpenAI's reference decoder (whisper/transcribe.py), which faster-whisper keeps.
COMPRESSION_RATIO_LIMIT = 2.4
LOG_PROB_FLOOR = -1.0
NO_SPEECH_LIMIT = 0.6
# Speech runs at 2-4 words (3-6 tokens) a second; twice the fast end plus a margin bounds a window's tokens.
TOKENS_PER_SECOND, TOKEN_MARGIN, WINDOW_TOKENS = 12, 16, 224


SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")


def sentences(segment: Any) -> list[tuple[float, float, str]]:
    """A decoded window's text cut into sentences, each timed by its words (Whisper's windows often hold two
    or three sentences, and an emotion is read per sentence); the whole segment where it has no word times."""
    words = [w for w in (segment.words or []) if w.word.strip()]
    if not words:
        text = segment.text.strip()
        return [(float(segment.start), float(segment.end), text)] if text else []
    found, current = [], []
    for word in words:
        current.append(word)
        if word.word.strip().rstrip("\"')»”").endswith(SENTENCE_END) or word is words[-1]:
            text = "".join(w.word for w in current).strip()
            found.append((float(current[0].start), float(current[-1].end), text))
            current = []
    return found


def compression_ratio(text: str) -> float:
    """Whisper's loop test: the text's bytes over their zlib-compressed size (repeated words compress well)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class Transcript:
    """What was said: the language (an ISO 639-1 code such as "en"), how sure the model was of it, the task
    ("transcribe", or "translate": the text is English) and timed segments, in seconds from the start of
    the file (not of the segment transcribed)."""

    language: str
    cues: tuple[Cue, ...]
    language_probability: float | None = None
    task: str = "transcribe"

    @property
    def text(self) -> str:
        return " ".join(cue.text for cue in self.cues)


class Transcriber:
    """Transcribes audio files or segments of them; the model is loaded once, on first use.

    `language` fixes the language (a code: "en", "de", ...) instead of detecting it from the first 30 s;
    `task="translate"` makes a multilingual model write English. `backend`: "ct2" (faster-whisper; the
    offline models only) or "torch" (transformers; any checkpoint); None: ct2 where it can run.
    `compute_type`: ct2's, "int8" (quantised weights) or "float32".
    """

    def __init__(
        self,
        model: str = "whisper-base",
        language: str | None = None,
        task: Literal["transcribe", "translate"] = "transcribe",
        num_beams: int = 1,
        device: Literal["cpu", "cuda", "auto"] = "auto",
        revision: str | None = None,
        backend: Literal["ct2", "torch"] | None = None,
        compute_type: Literal["int8", "float32"] = "int8",
    ):
        self.name, self.language, self.task, self.num_beams = model, language, task, num_beams
        self.device, self.revision, self.compute_type = device, revision, compute_type
        self._offline = offline_whisper(model)
        self.backend = backend or ("ct2" if self._offline is not None else "torch")
        if self._offline is None:
            if self.backend == "ct2":
                raise ConfigError(f"backend ct2 transcribes with the offline models; for {model!r} use backend=torch")
            self._location, self._local = resolve_checkpoint(model, "Whisper model")
        self._model = None
        self._tokenizer = None
        self._mel = None

    def with_task(self, task: Literal["transcribe", "translate"], language: str | None = None) -> Transcriber:
        """The same recogniser (the model loaded once is shared) for another task or a fixed language."""
        other = Transcriber.__new__(Transcriber)
        other.__dict__.update(self.__dict__)
        other.task, other.language = task, language if language is not None else self.language
        return other

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
        if self.backend == "ct2":
            return self._transcribe_ct2(path, start_s, end_s)
        signal, _ = load_audio(path, sample_rate=WHISPER_RATE, start_s=start_s, end_s=end_s)
        return self._transcribe_torch(signal, start_s)

    def _transcribe_ct2(self, path: str | os.PathLike, start_s: float | None, end_s: float | None) -> Transcript:
        from emocli.features.audio.whisper import ct2_device
        from emocli.features.audio.whisper_weights import faster_whisper_model

        model = faster_whisper_model(self._offline.name, self.compute_type, ct2_device(self.device))
        if self.language is not None and self.language not in model.supported_languages:
            raise ConfigError(f"{self.name} does not know language {self.language!r}"
                              + (": it is English-only" if not model.model.is_multilingual else ""))
        signal, _ = load_audio(path, sample_rate=WHISPER_RATE, start_s=start_s, end_s=end_s)
        offset = float(start_s or 0.0)
        task = self.task if model.model.is_multilingual else "transcribe"
        duration = len(signal) / WHISPER_RATE
        segments, info = model.transcribe(
            signal, language=self.language, task=task, beam_size=self.num_beams, best_of=1, temperature=0.0,
            compression_ratio_threshold=None, log_prob_threshold=LOG_PROB_FLOOR, no_speech_threshold=NO_SPEECH_LIMIT,
            condition_on_previous_text=False, vad_filter=False, without_timestamps=False, word_timestamps=True,
            max_new_tokens=min(WINDOW_TOKENS, TOKEN_MARGIN + round(TOKENS_PER_SECOND * min(duration, 30.0))),
        )
        cues = []
        for segment in segments:  # a generator: decoding happens here
            unsure = ("unsure",) if segment.avg_logprob < LOG_PROB_FLOOR else ()
            for start, end, text in sentences(segment):
                flags = (("repetitive",) if compression_ratio(text) > COMPRESSION_RATIO_LIMIT else ()) + unsure
                start = min(start, duration)
                end = min(max(end, start + 0.02), duration)
                cues.append(Cue(round(offset + start, 3), round(offset + max(end, start), 3), text, flags))
        return Transcript(info.language, tuple(cues), float(info.language_probability), task)

    def _transcribe_torch(self, signal, start_s: float | None) -> Transcript:
        import torch

        if self._model is None:
            self._load()
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
        return Transcript(language, tuple(cues), task=self.task)

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


TRANSCRIPTS = "transcripts.parquet"  # in a feature store: the cache of `transcribe_samples`
CACHE_EVERY = 32  # transcripts between two writes of the cache: what a killed run can lose


def transcribe_samples(table, recogniser: Transcriber, cache_folder: Path | None = None, progress: bool = True,
                       rows=None):
    """Text for the samples that have audio and no text: what `recogniser` hears in each (segment of) audio file,
    with where it came from (`text_source`, e.g. "whisper-base (de)") and the `language` heard. Returns the table
    with those columns filled, and the failures (sample_id, message) of audio that could not be read.

    Transcripts are cached in `cache_folder`/transcripts.parquet, keyed by the audio (path, size, time, segment)
    and the recogniser's settings, written every CACHE_EVERY samples: a second run (or one after
    kill -9) transcribes only what is new. `rows`: the index labels to consider (default: all)."""
    import pandas as pd
    from rich.progress import Progress

    from emocli.core.errors import EmoError
    from emocli.core.io import write_with
    from emocli.features.audio.io import audio_input_fingerprint

    identity = f"{recogniser.name}|{recogniser.backend}|{recogniser.compute_type}|{recogniser.task}|{recogniser.language}"
    path = cache_folder / TRANSCRIPTS if cache_folder is not None else None
    cached = pd.read_parquet(path) if path is not None and path.is_file() else pd.DataFrame(
        columns=["key", "text", "language", "source"])
    known = {row.key: row for row in cached.itertuples()}
    table = table.copy()
    for column in ("text_source", "language"):
        if column not in table:
            table[column] = pd.Series(pd.NA, index=table.index, dtype="string")
    wanted = table.loc[rows] if rows is not None else table
    needed = wanted.index[wanted["audio_path"].notna() & (wanted["text"].isna() | (wanted["text"].str.strip() == ""))]
    failures, fresh = [], []

    def save() -> None:
        if path is not None and fresh:
            rows = pd.concat([cached, pd.DataFrame(fresh)], ignore_index=True).drop_duplicates("key", keep="last")
            write_with(path, lambda temporary: rows.to_parquet(temporary, index=False))

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"transcribing with {recogniser.name}", total=len(needed))
        for count, index in enumerate(needed, 1):
            sample = table.loc[index]
            try:
                # the path too: two files of one size and time (unpacked from one archive) are two inputs
                key = f"{identity}|{sample['audio_path']}|{audio_input_fingerprint(sample)}"
                if key in known:
                    text, language = known[key].text, known[key].language
                else:
                    heard = recogniser.transcribe(sample["audio_path"], _given(sample["start_s"]), _given(sample["end_s"]))
                    text, language = heard.text, heard.language
                    fresh.append({"key": key, "text": text, "language": language, "source": identity})
                    if len(fresh) % CACHE_EVERY == 0:
                        save()
            except EmoError as error:
                failures.append((str(sample["sample_id"]), str(error)))
            else:
                if text:
                    table.loc[index, ["text", "text_source"]] = [text, f"{recogniser.name} ({language})"]
                if pd.isna(table.loc[index, "language"]):
                    table.loc[index, "language"] = language
            bar.update(task, completed=count)
    save()
    return table, failures


def _given(value) -> float | None:
    import pandas as pd

    return None if pd.isna(value) else float(value)
