"""A trained unit loaded once with its extractors rebuilt once, for any number of predictions on raw media."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from emocli.core.errors import ConfigError, EmoError, ExtractionError
from emocli.core.types import Cue
from emocli.features.runner import SampleFailure
from emocli.prediction.segments import (
    MAX_WINDOW_S,
    MIN_WINDOW_S,
    SUBTITLE_SUFFIXES,
    clip_cues,
    overlaps,
    read_transcript,
    windows,
)
from emocli.prediction.sources import MediaInfo, PredictFailure, Segment, Source, collect_sources, probe_media

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from rich.progress import Progress

    from emocli.core.types import Features
    from emocli.data.inputs import InputSpec
    from emocli.data.tables import EmotionData
    from emocli.features.base import Extractor
    from emocli.features.ray_runner import RayExecutor
    from emocli.prediction.bundle import BundlePredictor

PROBABILITY_PREFIX = "prob_"
TEXT_FLAGS = "text_flags"  # a Segment's extra: what the recogniser doubted about its text (Cue.flags)
SILENT = "silent"
NO_SPEECH = "no_speech"  # an extractor's own finding (Whisper): the level check is not needed then
# A segment whose RMS level is at or below this (dBFS, full scale = 0) is flagged "audio:silent": digital
# silence, or a noise floor far below speech (conversational speech recordings sit around -30 to -15 dBFS;
# a quiet room's noise, -60 and lower), so whatever the model says about it cannot come from a voice.
SILENCE_DBFS = -60.0


def check_new_media_inputs(inputs: Mapping[str, InputSpec], where: Path) -> None:
    """ConfigError when a run reads features that a new file cannot have (a dataset's shipped features, a
    table of the dataset's own clips such as OpenFace action units): said before anything loads, with the
    modalities that new media do give, to train on instead."""
    from emocli.features import extractor_class

    unusable = {}
    for modality, spec in inputs.items():
        name = spec.extractor_spec.get("extractor", spec.extractor)
        if name.startswith("precomputed-"):
            unusable[modality] = f"{name}, shipped with the dataset"
            continue
        try:
            reads_new_media = extractor_class(name).reads_new_media
        except ConfigError as error:  # an unknown name: looked up in the registry only, never imported
            raise ConfigError(f"inputs.{modality}: {error.problem}", path=where) from None
        if not reads_new_media:
            unusable[modality] = f"{name}, rows of a table of the dataset's own clips"
    if not unusable:
        return
    described = "; ".join(f"{modality} ({what})" for modality, what in unusable.items())
    usable = [m for m in inputs if m not in unusable]
    remedy = (f"train on the others to predict on new media (--modalities {','.join(usable)})" if usable
              else "train on features extracted from the media (emo extract)")
    raise ConfigError(f"the run reads features a new file cannot have: {described}; {remedy}", path=where)


def rebuild_extractor(spec: InputSpec, device: str = "auto") -> tuple[Extractor, list[str], list[str]]:
    """The extractor a feature set was made with, from its recorded spec; the library releases that differ
    from those that extracted the training features ("transformers 5.24.0 -> 6.0.1", see
    `release_changes`); and warnings of other differences from the recorded spec."""
    from emocli.features import extractor_class

    recorded = spec.extractor_spec
    name = recorded.get("extractor", spec.extractor)
    if name.startswith("precomputed-"):
        raise ConfigError(
            f"the run's {spec.modality} features ({name}) were shipped with the dataset, not extracted; they "
            "cannot be computed from new media. Train on extracted features (emo extract) to predict"
        )
    cls = extractor_class(name)
    params = dict(recorded.get("params", {}))
    # Where the extractor runs does not change what it outputs (it is not part of its fingerprint).
    if device != "auto" and "device" in cls.Params.model_fields:
        params["device"] = device
    extractor = cls(**params)
    if extractor.kind != spec.kind or extractor.dim != spec.dim:
        raise ConfigError(
            f"{name} rebuilt from the run gives {extractor.kind} [{extractor.dim}] features, but the model was "
            f"trained on {spec.kind} [{spec.dim}]"
        )
    now = extractor.spec()
    changes = release_changes(recorded.get("versions", {}), now.get("versions", {}))
    others = [key for key in sorted(set(now) | set(recorded)) if key not in ("versions", "dim", "params")
              and now.get(key) != recorded.get(key)]
    warnings = [f"{spec.modality} extractor {name}: {', '.join(others)} differ(s) from the recorded spec"] if others else []
    return extractor, changes, warnings


def release_changes(then: Mapping[str, str], here: Mapping[str, str]) -> list[str]:
    """The libraries whose release (major.minor) differs between two version records, as "lib then -> now".

    Patch releases (5.24.0 -> 5.24.1) are left out: they fix bugs within a release, and a fresh install
    differs from a recording in several of them, so warning of each buried the changes that can move a
    prediction (a new release of the encoder's library or of torch)."""
    from packaging.version import InvalidVersion, Version

    def release(version: str | None) -> tuple[int, ...] | str | None:
        try:
            return Version(version).release[:2] if version else None
        except InvalidVersion:
            return version

    return [f"{lib} {then.get(lib, 'absent')} -> {here.get(lib, 'absent')}"
            for lib in sorted(set(then) | set(here)) if release(then.get(lib)) != release(here.get(lib))]


def version_warning(changes: Mapping[str, Sequence[str]]) -> list[str]:
    """One warning for all the release changes of a model's extractors ({change: [extractor, ...]})."""
    if not changes:
        return []
    listed = ", ".join(f"{change} ({', '.join(users)})" for change, users in changes.items())
    return [f"library releases differ from those that extracted the training features: {listed}; predictions "
            "may differ slightly from evaluation"]


def substitute_extractor(spec: InputSpec, preset: str, device: str = "auto") -> Extractor:
    """The extractor of `preset` in place of the recorded one: the same extractor giving the same kind and width."""
    from emocli.features.presets import build_extractor

    extractor = build_extractor(preset)
    recorded = spec.extractor_spec.get("extractor", spec.extractor)
    if extractor.name != recorded or extractor.kind != spec.kind or extractor.dim != spec.dim:
        raise ConfigError(f"{spec.modality}: preset {preset!r} gives {extractor.name} {extractor.kind} [{extractor.dim}] "
                          f"features; the unit was trained on {recorded} {spec.kind} [{spec.dim}]")
    if device != "auto" and "device" in type(extractor).Params.model_fields:
        extractor = build_extractor(preset, device=device)
    return extractor


@dataclass
class PredictionResult:
    table: pd.DataFrame  # one row per predicted segment
    failures: list[PredictFailure]
    classes: tuple[str, ...]
    task: str  # single_label / multi_label
    threshold: float | None  # multi-label decision threshold
    unit: Path
    model_name: str
    notes: list[PredictFailure] = field(default_factory=list)  # predicted, but not quite as asked
    durations: dict[str, float] = field(default_factory=dict)  # input -> its medium's length (s), where known

    @property
    def flagged(self) -> int:
        """How many segments carry a flag (no face, silence, ...): their predictions rest on nothing."""
        return int(sum(bool(flags) for flags in self.table["flags"])) if "flags" in self.table else 0

    @property
    def probabilities(self) -> np.ndarray:
        """[N, C] probabilities in class order."""
        return self.table[[PROBABILITY_PREFIX + c for c in self.classes]].to_numpy()


def is_silent(sample: Any) -> bool:
    """Whether a segment's audio is below SILENCE_DBFS (RMS, full scale 0 dBFS); decoded at its own rate."""
    import numpy as np

    from emocli.features.audio.io import load_audio, sample_audio_path, sample_segment

    try:
        start_s, end_s = sample_segment(sample)
        signal, _ = load_audio(sample_audio_path(sample), start_s=start_s, end_s=end_s)
    except EmoError:
        return False  # the extractor read it; a second decode that fails says nothing about loudness
    rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0
    return rms <= 10 ** (SILENCE_DBFS / 20)


READ, TRANSLATED, ABSTAINED = "read", "translated", "abstained"  # how a bundle's text heads take a transcript


@dataclass(frozen=True)
class TimedText:
    """An input's text as timed segments, given to `Predictor.predict` (a model bundle transcribes once for
    all its heads), where it came from (the `text_source` column) and how text heads take it (READ as it
    is, TRANSLATED by Whisper into English, or ABSTAINED from: a language they do not read)."""

    cues: tuple[Cue, ...]
    source: str
    handling: str = READ


class SpeechRecogniser(Protocol):
    """What transcribes a medium: emocli.features.audio.transcribe.Transcriber, or a test's stand-in."""

    name: str

    def transcribe(self, path: str | Path, start_s: float | None = None, end_s: float | None = None) -> Any: ...


class Predictor:
    """A trained unit loaded once, with its extractors built once, for any number of `predict` calls.

    A run that reads text gets it from a subtitle or transcript file beside the medium, from `--text`, or,
    when there is neither, by transcribing the medium's speech (`transcriber`, default Whisper base from the
    offline package): its timed segments become the segments predicted, and the table says where each
    text came from (`text_source`)."""

    def __init__(self, run: str | Path, device: str = "auto", workers: int = 0, revision: str | None = None,
                 transcriber: SpeechRecogniser | None = None, executor: RayExecutor | None = None,
                 extractors: Mapping[str, str] | None = None):
        """`run`: a run folder or unit, a shipped pretrained model's name, or a hub id (owner/name, at
        `revision`). `executor`: a Ray cluster to extract the inputs' features on (None: `workers` here).
        `extractors`: modality -> an extraction preset to read new media with instead of the one the unit was
        trained on, of the same extractor, kind and width (a face head trained on face crops reads the faces a
        detector finds in a video: the same expression models' outputs)."""
        from emocli.runs.hub import resolve
        from emocli.runs.inference import TrainedUnit, choose_unit
        from emocli.runs.layout import FEATURE_SPEC

        self.unit, self.note = choose_unit(resolve(run, revision))
        trained = TrainedUnit.read(self.unit)
        self.model_name = trained.model_name
        self.label_map = trained.label_map
        self.inputs = trained.inputs
        check_new_media_inputs({m: spec for m, spec in self.inputs.items() if m not in (extractors or {})},
                               self.unit / FEATURE_SPEC)  # before the weights and encoders load
        self.loaded = trained.load(device)
        self.threshold = self.loaded.threshold
        self.workers = workers
        self.executor = executor
        self.device = device
        self.transcriber = transcriber
        self._given: dict[str, TimedText] = {}  # this predict call's given transcripts
        self._durations: dict[str, float] = {}  # this predict call's media lengths
        self.extractors: dict[str, Extractor] = {}
        self.spec_warnings: list[str] = []  # an extractor's recorded spec differs otherwise
        self.notes: list[PredictFailure] = []  # this predict call's inputs predicted not quite as asked
        # library release changes -> the extractors they concern ("audio whisper"): one warning for the model
        self.release_changes: dict[str, list[str]] = {}
        for modality, spec in self.inputs.items():
            try:
                if modality in (extractors or {}):
                    self.extractors[modality] = substitute_extractor(spec, extractors[modality], device)
                    continue
                self.extractors[modality], changes, warnings = rebuild_extractor(spec, device)
            except ConfigError as error:
                if error.path is not None:
                    raise
                raise ConfigError(f"inputs.{modality}: {error.problem}", path=self.unit / FEATURE_SPEC) from None
            for change in changes:
                self.release_changes.setdefault(change, []).append(f"{modality} {spec.extractor}")
            self.spec_warnings.extend(warnings)
        self.warnings = self.spec_warnings + version_warning(self.release_changes)

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, *, revision: str | None = None, device: str = "auto",
                        workers: int = 0, executor: RayExecutor | None = None) -> Predictor | BundlePredictor:
        """A model ready to predict, by name as Hugging Face's `from_pretrained`: a shipped pretrained model
        (default: emo-default), a run folder or unit, or a hub id (owner/name, at `revision`). A bundle of
        heads (such as emo-default) loads as a BundlePredictor, which predicts the same way."""
        from emocli.prediction.bundle import BundlePredictor, is_bundle
        from emocli.runs.hub import DEFAULT_MODEL, resolve

        folder = resolve(model or DEFAULT_MODEL, revision)
        if is_bundle(folder):
            return BundlePredictor(folder, device=device, workers=workers, executor=executor)
        return cls(folder, device=device, workers=workers, executor=executor)

    def needs(self, modality: str) -> bool:
        return modality in self.inputs

    def _needs_text_message(self, source: Source) -> str:
        extractor = self.inputs["text"].extractor
        if source.media is None:
            return f"the run needs text ({extractor}) and this input has none"
        media = source.media
        heard = f"{self.transcriber.name} heard no speech in it; " if self.transcriber is not None else ""
        return (f"the run needs text ({extractor}); {heard}give --text or put {media.stem}.srt (or .vtt, .txt) "
                f"next to {media.name}")

    # -- segmentation -------------------------------------------------------------------------------

    def segments(self, source: Source, window_s: float) -> list[Segment]:
        """The segments of one source; EmoError when it lacks what the run needs or cannot be read."""
        info = None
        if source.media is not None:
            info = self._check_media(source)
            if info.duration_s:
                self._durations[source.name] = info.duration_s
        else:
            for modality in ("audio", "visual"):
                if self.needs(modality):
                    raise EmoError(f"the run needs {modality} ({self.inputs[modality].extractor}); a text input has none")
        transcript = source.transcript
        given = self._given.get(source.name)
        if given is not None and source.segments is None:
            transcript, source.text_source = list(given.cues), given.source
        if transcript is None and source.transcript_path is not None:
            transcript = self._sidecar(source)
            source.text_source = str(source.transcript_path) if transcript else None
        if transcript is None and source.segments is None and self.needs("text") and info.has_audio:
            transcript = self._transcribe(source)
        if source.segments is not None:  # manifest rows, as given
            segments = source.segments
        elif source.media is None:  # text alone: one segment per line or cue
            segments = [Segment(c.start_s, c.end_s, c.text, c.start_s, c.end_s) for c in transcript or []]
        else:
            segments = self._media_segments(source, info, transcript, window_s)
        if self.needs("text"):
            missing = [i for i, s in enumerate(segments) if not s.text]
            if missing and len(missing) == len(segments):
                raise EmoError(self._needs_text_message(source))
        if not segments:
            raise EmoError("nothing to predict: no segment (the transcript's cues all lie past the end of the media)")
        return segments

    def _transcribe(self, source: Source) -> list[Cue]:
        """The medium's speech as timed segments (none for silence: the run then has no text to read)."""
        if self.transcriber is None:
            from emocli.features.audio.transcribe import Transcriber

            self.transcriber = Transcriber(device=self.device)
        transcript = self.transcriber.transcribe(source.audio or source.media)
        source.text_source = f"{self.transcriber.name} ({transcript.language})"
        return list(transcript.cues)

    def _sidecar(self, source: Source) -> list[Cue] | None:
        """The transcript beside a medium, read only when the run uses it: its text for a run that reads
        text; otherwise only subtitle cues, whose times are the segments, and a damaged subtitle file then
        costs its cues (the medium is cut into windows, with a note) rather than the input."""
        path = source.transcript_path
        if source.media is None or self.needs("text"):
            return self._noted(source, read_transcript(path))
        if path.suffix.lower() not in SUBTITLE_SUFFIXES:
            return None  # an untimed transcript neither segments the medium nor feeds the model
        try:
            return self._noted(source, read_transcript(path))
        except EmoError as error:
            self.notes.append(PredictFailure(source.name, f"{error}; its subtitles are not used, the medium is "
                                                          "cut into --window segments"))
            return None

    def _noted(self, source: Source, cues: list[Cue]) -> list[Cue]:
        """A transcript's cues, with a note when some overlap."""
        self.notes.extend(PredictFailure(source.name, f"{source.transcript_path}: {note}") for note in overlaps(cues))
        return cues

    def _check_media(self, source: Source) -> MediaInfo:
        info = probe_media(source.media)
        if source.audio is not None and source.video is not None:
            audio = probe_media(source.audio)
            info = MediaInfo(audio.duration_s or info.duration_s, audio.has_audio, info.has_video,
                             audio.audio_s, info.video_s)
        needed = [s for m, s in (("audio", info.audio_s), ("visual", info.video_s)) if self.needs(m)]
        if info.duration_s is not None and needed and all(needed) and min(needed) < info.duration_s - 0.5:
            # Streams of different lengths (a dubbed audio track cut short): the segments cover what every
            # stream the run reads holds; the rest is named, not predicted as a failure per segment.
            end = min(needed)
            self.notes.append(PredictFailure(source.name, f"the streams differ in length ({info.describe_streams()}); "
                                             f"only the first {end:.1f} s, which every stream the model reads "
                                             f"covers, are predicted"))
            info = MediaInfo(end, info.has_audio, info.has_video, info.audio_s, info.video_s)
        if self.needs("audio") and not info.has_audio:
            raise ExtractionError(
                f"has no audio track; the run needs audio ({self.inputs['audio'].extractor}): give a video with "
                "sound, or its audio file in a manifest's audio column",
                path=source.media,
            )
        if self.needs("visual") and not info.has_video:
            raise ExtractionError(f"has no video; the run needs visual ({self.inputs['visual'].extractor})",
                                  path=source.media)
        return info

    def _media_segments(self, source: Source, info: MediaInfo, transcript: list[Cue] | None, window_s: float) -> list[Segment]:
        duration = info.duration_s
        whole = Segment(None, None, None, 0.0 if duration else None, duration)
        if transcript and all(c.start_s is not None for c in transcript):  # subtitle cues
            cues = sorted(clip_cues(transcript, duration), key=lambda c: c.start_s)
            return [Segment(c.start_s, c.end_s, c.text, c.start_s, c.end_s, {TEXT_FLAGS: c.flags}) for c in cues]
        if transcript and self.needs("text"):  # untimed text belongs to the whole medium
            whole.text = " ".join(c.text for c in transcript)
            return [whole]
        if duration is None:
            return [whole]
        parts = windows(duration, window_s)
        if len(parts) == 1:
            # The whole file, read as training read it (no segment bounds): identical samples.
            return [whole]
        return [Segment(w.start_s, w.end_s, None, w.start_s, w.end_s) for w in parts]

    # -- prediction ---------------------------------------------------------------------------------

    def predict(
        self,
        inputs: Sequence[str | Path],
        *,
        text: str | None = None,
        window_s: float = 4.0,
        progress: Progress | None = None,
        transcripts: Mapping[str, TimedText] | None = None,
        allow_outside: bool = False,
    ) -> PredictionResult:
        """`transcripts`: input name -> its text as timed segments, used instead of what the input has.
        `allow_outside`: a manifest may name media outside its own folder."""
        import numpy as np
        import pandas as pd

        from emocli.core.samples import normalize_table
        from emocli.features.runner import extract_samples

        if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:  # also NaN
            raise ConfigError(f"the window must be from {MIN_WINDOW_S:g} to {MAX_WINDOW_S:g} seconds, not {window_s}")
        self.notes = []
        self._durations = {}
        self._given = dict(transcripts or {})
        sources, failures = collect_sources(inputs, text, allow_outside=allow_outside)
        rows, shown, text_flags = [], [], []
        for number, source in enumerate(sources):
            try:
                segments = self.segments(source, window_s)
            except EmoError as error:
                failures.append(PredictFailure(source.name, _message(error, source.name)))
                continue
            for index, segment in enumerate(segments):
                rows.append({
                    "sample_id": f"{number}/{index}",
                    "dialogue_id": str(number),
                    "position": index,
                    "speaker": segment.extra.get("speaker"),
                    "text": segment.text,
                    "audio_path": str(source.audio) if source.audio else None,
                    "video_path": str(source.video) if source.video else None,
                    "start_s": segment.start_s,
                    "end_s": segment.end_s,
                })
                shown.append((source.name, index, segment.shown_start_s, segment.shown_end_s, segment.text,
                              source.text_source if segment.text else None))
                text_flags.append([f"text:{flag}" for flag in segment.extra.get(TEXT_FLAGS, ())])
        columns = ["input", "segment", "start_s", "end_s", "text", "text_source"]
        if not rows:
            return self._result(pd.DataFrame(columns=columns), np.zeros((0, len(self.label_map.names))), failures)

        samples = normalize_table(pd.DataFrame(rows), source="predict")
        extracted = extract_samples(list(self.extractors.values()), samples, workers=self.workers, progress=progress,
                                    executor=self.executor)
        ok = np.ones(len(samples), dtype=bool)
        for extractor in self.extractors.values():
            for i, result in enumerate(extracted[extractor.feature_set_name]):
                if ok[i] and isinstance(result, ExtractionError):
                    ok[i] = False
                    name, index = shown[i][:2]
                    failures.append(PredictFailure(name, _message(result, name), segment=index))
        keep = np.flatnonzero(ok)
        info = pd.DataFrame([shown[i] for i in keep], columns=columns)
        info["flags"] = [sorted(self._flags({m: extracted[e.feature_set_name][i] for m, e in self.extractors.items()},
                                            samples.iloc[i]) + (text_flags[i] if self.needs("text") else []))
                         for i in keep]
        if not len(keep):
            return self._result(info, np.zeros((0, len(self.label_map.names))), failures)
        data, adapted = self._data(samples.iloc[keep].reset_index(drop=True),
                                   {m: [extracted[e.feature_set_name][i].values for i in keep]
                                    for m, e in self.extractors.items()})
        if not adapted.all():  # a speaker-standardised model, and a recording too short for its statistics
            need = self.loaded.train.speaker_min_samples
            for name in info.loc[~adapted, "input"].unique():
                failures.append(PredictFailure(name, f"the model standardises each recording by its own statistics and "
                                                     f"needs {need} segments of it; this one has "
                                                     f"{int((info['input'] == name).sum())}"))
            info = info[adapted].reset_index(drop=True)
            data = data.subset(np.flatnonzero(adapted))
        return self._result(info, self._probabilities(data), failures)

    def _flags(self, features: dict[str, Features], sample: pd.Series) -> list[str]:
        """What the segment's inputs lacked, as "modality:flag": the extractors' own flags, and "audio:silent"
        when the run hears audio, its extractor found no silence itself, and the segment's level says so."""
        flags = [f"{modality}:{flag}" for modality, result in features.items() for flag in result.flags]
        if "audio" in features and NO_SPEECH not in features["audio"].flags and is_silent(sample):
            flags.append(f"audio:{SILENT}")
        return sorted(flags)

    def _data(self, samples: pd.DataFrame, features: dict[str, list[np.ndarray]]) -> tuple[EmotionData, np.ndarray]:
        import numpy as np

        from emocli.data.tables import EmotionData

        # The collator carries targets for losses; unlabelled samples get zeros, which nothing reads here.
        shape = (len(samples),) if self.label_map.task == "single_label" else (len(samples), len(self.label_map.names))
        targets = np.zeros(shape, dtype=np.int64 if self.label_map.task == "single_label" else np.float32)
        return self.loaded.standardize_adapted(EmotionData(samples, features, targets, self.label_map, self.inputs))

    def _probabilities(self, data: EmotionData) -> np.ndarray:
        """[N, C] in the rows' order, through the one scoring path evaluation takes (the run's eval batch
        size, whole dialogues for conversation models)."""
        import numpy as np

        return self.loaded.score(data, np.arange(len(data))).probs

    def _result(self, info: pd.DataFrame, probs: np.ndarray, failures: list[PredictFailure]) -> PredictionResult:
        import numpy as np

        names = list(self.label_map.names)
        table = info.reset_index(drop=True)
        flags = table.pop("flags") if "flags" in table else [[] for _ in range(len(table))]
        if self.label_map.task == "single_label":
            table["label"] = [names[i] for i in probs.argmax(axis=1)] if len(probs) else []
        else:
            table["labels"] = [[n for n, p in zip(names, row) if p > self.threshold] for row in probs]
        table["flags"] = list(flags)
        for k, name in enumerate(names):
            table[PROBABILITY_PREFIX + name] = probs[:, k].astype(np.float64)
        threshold = self.threshold if self.label_map.task == "multi_label" else None
        return PredictionResult(table, failures, tuple(names), self.label_map.task, threshold, self.unit, self.model_name,
                                list(self.notes), dict(self._durations))


def _message(error: EmoError, input_name: str) -> str:
    """An error's text for a failure of `input_name`: the file only when it is another one (a sidecar)."""
    problem = error.message if isinstance(error, SampleFailure) else error.problem
    if error.path is None or str(error.path) == input_name:
        return problem
    return f"{error.path}: {problem}"


def predict(run: str | Path, inputs: Sequence[str | Path], **options: Any) -> PredictionResult:
    """One-off prediction: load the run, predict, return. Keep a `Predictor` to predict repeatedly."""
    device, workers = options.pop("device", "auto"), options.pop("workers", 0)
    return Predictor(run, device=device, workers=workers).predict(inputs, **options)


