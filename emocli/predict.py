"""Raw media to emotions with a trained run: what `emo predict` calls.

    predictor = Predictor("runs/cfnsr-ravdess-a")          # a unit seed=S/fold=K, or a run root
    result = predictor.predict(["clip.mp4", "clips/"], window_s=4.0)
    result.table            # one row per input segment: input, segment, start_s, end_s, text, label(s), prob_*
    result.failures         # inputs (or segments) that could not be predicted, and why
    write_predictions(result, "out.csv"); plot_timeline(result, "timeline.png")

The run's `feature_spec.json` says which extractors made its features (names, parameters, library
versions). The predictor rebuilds exactly those, once, and extracts in memory through the same runner as
the feature store (`extract_samples`); the model input is built by the training data module's collator
and the probabilities by the run's train step, so an input gets the numbers evaluation would give it.

Inputs and what is read from them:
* a video: its frames, and its own audio track (a manifest's `audio` column can name another file);
* an audio file;
* text: a transcript next to the media with the same stem (`clip.srt`, `clip.vtt`, `clip.txt`), or
  `text=` for every media input; a `.txt` input is one utterance per non-empty line, an `.srt`/`.vtt`
  input one per cue; with no media inputs, `text=` is itself the input;
* a folder: every media file in it, recursively (transcripts in it are sidecars, not inputs);
* a manifest (CSV/TSV/JSONL, emocli.datasets.manifest): one sample per row, as given.

Segments: subtitle cues when there are any (each cue is a segment with its text); otherwise fixed
windows (emocli.segments.windows); an untimed transcript makes the whole medium one segment, because
its text cannot be split between windows. Conversation models (input_unit "dialogue") read the
segments of one input as one dialogue, in time order; utterance models read each segment alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocli.core.errors import ConfigError, EmoError, ExtractionError
from emocli.features.runner import SampleFailure
from emocli.segments import (
    TRANSCRIPT_SUFFIXES,
    Cue,
    clip_cues,
    read_transcript,
    sidecar_transcript,
    windows,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from rich.progress import Progress

    from emocli.features.base import Extractor
    from emocli.training.data import EmotionData, InputSpec

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".json"})
OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
PROBABILITY_PREFIX = "prob_"
TEXT_INPUT = "--text"  # the input name of a literal text
MAX_PLOTTED_INPUTS = 10


# ----------------------------------------------------------------------------------------- the run


def choose_unit(run: str | Path) -> tuple[Path, str]:
    """The unit to predict with, and a sentence saying which and why.

    A unit directory (seed=S/fold=K) is used as it is. In a run root, the finished unit with the best
    validation value of the run's own selection metric is chosen (validation, never test: choosing by
    test scores would make them optimistic); units without a validation score fall back to the first.
    """
    from emocli.training import runs
    from emocli.training.config import TrainConfig

    root = Path(run)
    found = runs.units(root)
    if len(found) == 1:
        return found[0], f"model: {found[0]}"
    finished = [u for u in found if (u / runs.WEIGHTS).is_file() and (u / runs.TEST_METRICS).is_file()]
    if not finished:
        raise EmoError("no finished unit (seed=*/fold=*/test_metrics.json) in this run", path=root)
    scored = []
    for unit in finished:
        selection = TrainConfig.model_validate(runs.read_json(unit / runs.CONFIG)["train"]).effective_selection()
        best_epoch = runs.read_json(unit / runs.TEST_METRICS).get("best_epoch")
        record = next((r for r in runs.read_jsonl(unit / runs.METRICS) if r.get("epoch") == best_epoch), {})
        value = record.get("valid", {}).get(selection.metric)
        if value is not None and not math.isnan(value):
            scored.append((value if selection.mode == "max" else -value, unit, selection.metric, value))
    if not scored:
        return finished[0], f"model: {finished[0]} (the first of {len(finished)} units; none has a validation score)"
    _, unit, metric, value = max(scored, key=lambda item: item[0])
    return unit, f"model: {unit} (best validation {metric} {value:.4f} of {len(finished)} units)"


def rebuild_extractor(spec: InputSpec, device: str = "auto") -> tuple[Extractor, list[str]]:
    """The extractor a feature set was made with, from its recorded spec; and warnings where this
    environment differs from the one that extracted the training features (library versions, ...)."""
    from emocli.features.presets import extractor_class

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
    warnings = []
    now = extractor.spec()
    then, here = recorded.get("versions", {}), now.get("versions", {})
    changed = [f"{lib} {then.get(lib, 'absent')} -> {here.get(lib, 'absent')}"
               for lib in sorted(set(then) | set(here)) if then.get(lib) != here.get(lib)]
    if changed:
        warnings.append(
            f"{spec.modality} extractor {name}: library versions differ from extraction ({', '.join(changed)}); "
            "predictions may differ slightly from evaluation"
        )
    others = [key for key in sorted(set(now) | set(recorded)) if key not in ("versions", "dim", "params")
              and now.get(key) != recorded.get(key)]
    if others:
        warnings.append(f"{spec.modality} extractor {name}: {', '.join(others)} differ(s) from the recorded spec")
    return extractor, warnings


# ---------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None  # None: the container does not say
    has_audio: bool
    has_video: bool


def probe_media(path: str | Path) -> MediaInfo:
    """Streams and duration of a media file; ExtractionError naming the file when it cannot be opened."""
    from emocli.features.audio.io import SOUNDFILE_SUFFIXES

    path = Path(path)
    if not path.is_file():
        raise ExtractionError("no such file", path=path)
    if path.stat().st_size == 0:
        raise ExtractionError("file is empty", path=path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        import soundfile

        try:
            info = soundfile.info(str(path))
            return MediaInfo(info.frames / info.samplerate, True, False)
        except (soundfile.SoundFileError, RuntimeError):
            pass  # misnamed or a codec this libsndfile lacks: FFmpeg may read it, as load_audio does
    import av

    try:
        with av.open(str(path)) as container:
            audio, video = container.streams.audio, container.streams.video
            duration = container.duration / 1_000_000 if container.duration else None
            if duration is None:
                lengths = [float(s.duration * s.time_base) for s in (*audio, *video) if s.duration and s.time_base]
                duration = max(lengths, default=None)
            return MediaInfo(duration, bool(audio), bool(video))
    except av.FFmpegError as error:  # its str() carries an errno and the path: the reason alone reads better
        raise ExtractionError(f"cannot open as media: {error.strerror or error}", path=path) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ExtractionError(f"cannot open as media: {error}", path=path) from None


@dataclass
class Segment:
    """One prediction unit of an input: what the sample table row will read."""

    start_s: float | None  # None: the whole medium (or text alone)
    end_s: float | None
    text: str | None
    shown_start_s: float | None = None  # the interval shown in outputs (a whole medium: 0 .. duration)
    shown_end_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # manifest columns (speaker, ...)


@dataclass
class Source:
    """One input: a media file with its transcript, a text, or a dialogue (or row) of a manifest."""

    name: str
    audio: Path | None = None
    video: Path | None = None
    transcript: list[Cue] | None = None
    transcript_path: Path | None = None
    segments: list[Segment] | None = None  # given (manifest rows): used as they are

    @property
    def media(self) -> Path | None:
        return self.video or self.audio


@dataclass
class PredictFailure:
    input: str
    message: str
    segment: int | None = None

    def __str__(self) -> str:
        where = self.input if self.segment is None else f"{self.input} (segment {self.segment})"
        return f"{where}: {self.message}"


def media_files(folder: Path) -> list[Path]:
    """Every audio and video file under `folder`, recursively, in path order."""
    suffixes = AUDIO_SUFFIXES | VIDEO_SUFFIXES
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def collect_sources(inputs: Iterable[str | Path], text: str | None = None) -> tuple[list[Source], list[PredictFailure]]:
    """Expand the inputs (files, folders, manifests) into sources; what cannot be read becomes a failure."""
    sources: list[Source] = []
    failures: list[PredictFailure] = []
    inputs = [Path(i) for i in inputs]
    if not inputs:
        if text is None or not text.strip():
            raise EmoError("nothing to predict on: give media files, folders, a manifest, or --text")
        return [Source(TEXT_INPUT, transcript=[Cue(None, None, text.strip())])], []
    for path in inputs:
        if path.is_dir():
            found = media_files(path)
            if not found:
                failures.append(PredictFailure(str(path), "no audio or video files in this folder"))
            sources.extend(_media_source(p) for p in found)
        elif not path.exists():
            failures.append(PredictFailure(str(path), "no such file or folder"))
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            try:
                sources.extend(_manifest_sources(path))
            except EmoError as error:
                failures.append(PredictFailure(str(path), error.problem if error.path == path else str(error)))
        elif path.suffix.lower() in TRANSCRIPT_SUFFIXES:
            try:
                sources.append(Source(str(path), transcript=read_transcript(path), transcript_path=path))
            except EmoError as error:
                failures.append(PredictFailure(str(path), error.problem))
        else:
            sources.append(_media_source(path))
    if text is not None:
        for source in sources:
            if source.media is not None and source.segments is None:
                source.transcript, source.transcript_path = [Cue(None, None, text.strip())], None
    return sources, failures


def _media_source(path: Path) -> Source:
    kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "audio"
    return Source(str(path), **{kind: path}, transcript_path=sidecar_transcript(path))


def _manifest_sources(path: Path) -> list[Source]:
    """Rows of a manifest: the rows of one dialogue_id form one source (a dialogue), other rows one each."""
    from emocli.datasets.manifest import ManifestAdapter
    from emocli.features.runner import sample_records

    table = ManifestAdapter(require_labels=False).load(path).table
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in sample_records(table):
        key = f"dialogue {record['dialogue_id']}" if record["dialogue_id"] is not None else record["sample_id"]
        groups.setdefault(key, []).append(record)
    sources = []
    for key, records in groups.items():
        records.sort(key=lambda r: (r["position"] is None, r["position"] or 0))
        first = records[0]
        segments = [
            Segment(r["start_s"], r["end_s"], r["text"], r["start_s"], r["end_s"], {"speaker": r["speaker"]})
            for r in records
        ]
        audio, video = first["audio_path"], first["video_path"]
        if any((r["audio_path"], r["video_path"]) != (audio, video) for r in records):
            raise EmoError(f"dialogue {first['dialogue_id']}: its rows name different media files; a dialogue "
                           "is predicted from one medium", path=path)
        sources.append(Source(
            f"{path}#{key}", audio=Path(audio) if audio else None, video=Path(video) if video else None,
            segments=segments,
        ))
    return sources


# ------------------------------------------------------------------------------------- prediction


@dataclass
class PredictionResult:
    table: pd.DataFrame  # one row per predicted segment
    failures: list[PredictFailure]
    classes: tuple[str, ...]
    task: str  # single_label / multi_label
    threshold: float | None  # multi-label decision threshold
    unit: Path
    model_name: str

    @property
    def probabilities(self) -> np.ndarray:
        """[N, C] probabilities in class order."""
        return self.table[[PROBABILITY_PREFIX + c for c in self.classes]].to_numpy()


class Predictor:
    """A trained unit loaded once, with its extractors built once, for any number of `predict` calls."""

    def __init__(self, run: str | Path, device: str = "auto", workers: int = 0):
        import torch

        from emocli.core.types import LabelMap
        from emocli.training import runs
        from emocli.training.config import TrainConfig
        from emocli.training.data import InputSpec
        from emocli.training.steps import step_class

        self.unit, self.note = choose_unit(run)
        trained = runs.TrainedUnit.read(self.unit)
        self.model_name = trained.config["model_name"]
        self.train_config = TrainConfig.model_validate(trained.config["train"])
        self.label_map = LabelMap.from_json(trained.label_map)
        self.inputs = {m: InputSpec.from_json(s) for m, s in trained.feature_spec["inputs"].items()}
        self.conversation = trained.feature_spec["input_unit"] == "dialogue"
        self.device = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = trained.build_model().to(self.device)
        self.standardizer = trained.standardizer()
        self.step = step_class(self.model_name)(self.train_config.step, self.model.config)
        self.parties = getattr(self.model.config, "num_parties", None)
        self.threshold = self.train_config.threshold if self.train_config.threshold is not None else 0.5
        self.workers = workers
        self.extractors: dict[str, Extractor] = {}
        self.warnings: list[str] = []
        for modality, spec in self.inputs.items():
            self.extractors[modality], warnings = rebuild_extractor(spec, device)
            self.warnings.extend(warnings)

    def needs(self, modality: str) -> bool:
        return modality in self.inputs

    def _needs_text_message(self, source: Source) -> str:
        extractor = self.inputs["text"].extractor
        if source.media is None:
            return f"the run needs text ({extractor}) and this input has none"
        media = source.media
        return (f"the run needs text ({extractor}); give --text or put {media.stem}.srt (or .vtt, .txt) next to "
                f"{media.name}")

    # -- segmentation -------------------------------------------------------------------------------

    def segments(self, source: Source, window_s: float) -> list[Segment]:
        """The segments of one source; EmoError when it lacks what the run needs or cannot be read."""
        info = None
        if source.media is not None:
            info = self._check_media(source)
        else:
            for modality in ("audio", "visual"):
                if self.needs(modality):
                    raise EmoError(f"the run needs {modality} ({self.inputs[modality].extractor}); a text input has none")
        transcript = source.transcript
        if transcript is None and source.transcript_path is not None:
            transcript = read_transcript(source.transcript_path)
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

    def _check_media(self, source: Source) -> MediaInfo:
        info = probe_media(source.media)
        if source.audio is not None and source.video is not None:
            audio = probe_media(source.audio)
            info = MediaInfo(audio.duration_s or info.duration_s, audio.has_audio, info.has_video)
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
            return [Segment(c.start_s, c.end_s, c.text, c.start_s, c.end_s) for c in cues]
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
    ) -> PredictionResult:
        import numpy as np
        import pandas as pd

        from emocli.core.samples import normalize_table
        from emocli.features.runner import extract_samples

        if window_s <= 0:
            raise ConfigError(f"the window must be positive, not {window_s}")
        sources, failures = collect_sources(inputs, text)
        rows, shown = [], []
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
                shown.append((source.name, index, segment.shown_start_s, segment.shown_end_s, segment.text))
        columns = ["input", "segment", "start_s", "end_s", "text"]
        if not rows:
            return self._result(pd.DataFrame(columns=columns), np.zeros((0, len(self.label_map.names))), failures)

        samples = normalize_table(pd.DataFrame(rows), source="predict")
        extracted = extract_samples(list(self.extractors.values()), samples, workers=self.workers, progress=progress)
        ok = np.ones(len(samples), dtype=bool)
        for extractor in self.extractors.values():
            for i, result in enumerate(extracted[extractor.feature_set_name]):
                if ok[i] and isinstance(result, ExtractionError):
                    ok[i] = False
                    name, index = shown[i][:2]
                    failures.append(PredictFailure(name, _message(result, name), segment=index))
        keep = np.flatnonzero(ok)
        info = pd.DataFrame([shown[i] for i in keep], columns=columns)
        if not len(keep):
            return self._result(info, np.zeros((0, len(self.label_map.names))), failures)
        data = self._data(samples.iloc[keep].reset_index(drop=True),
                          {m: [extracted[e.feature_set_name][i].values for i in keep] for m, e in self.extractors.items()})
        return self._result(info, self._probabilities(data), failures)

    def _data(self, samples: pd.DataFrame, features: dict[str, list[np.ndarray]]) -> EmotionData:
        import numpy as np

        from emocli.training.data import EmotionData

        # The collator carries targets for losses; unlabelled samples get zeros, which nothing reads here.
        shape = (len(samples),) if self.label_map.task == "single_label" else (len(samples), len(self.label_map.names))
        targets = np.zeros(shape, dtype=np.int64 if self.label_map.task == "single_label" else np.float32)
        data = EmotionData(samples, features, targets, self.label_map, self.inputs)
        return self.standardizer.apply(data) if self.standardizer is not None else data

    def _probabilities(self, data: EmotionData) -> np.ndarray:
        """[N, C] in the rows' order: the evaluation path's batches (training's collator, the run's eval
        batch size, whole dialogues for conversation models) through the run's step."""
        import numpy as np
        import torch

        from emocli.training.data import eval_loader

        loader = eval_loader(
            data, np.arange(len(data)), conversation=self.conversation,
            batch_size=self.train_config.eval_batch_size, parties=self.parties,
        )
        probs = np.zeros((len(data), len(self.label_map.names)), dtype=np.float32)
        self.model.eval()
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(self.device)
                logits = batch.flatten(self.step.forward(self.model, batch).logits)
                probs[batch.rows] = self.step.probabilities(logits).float().cpu().numpy()
        return probs

    def _result(self, info: pd.DataFrame, probs: np.ndarray, failures: list[PredictFailure]) -> PredictionResult:
        import numpy as np

        names = list(self.label_map.names)
        table = info.reset_index(drop=True)
        if self.label_map.task == "single_label":
            table["label"] = [names[i] for i in probs.argmax(axis=1)] if len(probs) else []
        else:
            table["labels"] = [[n for n, p in zip(names, row) if p > self.threshold] for row in probs]
        for k, name in enumerate(names):
            table[PROBABILITY_PREFIX + name] = probs[:, k].astype(np.float64)
        threshold = self.threshold if self.label_map.task == "multi_label" else None
        return PredictionResult(table, failures, tuple(names), self.label_map.task, threshold, self.unit, self.model_name)


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


# ---------------------------------------------------------------------------------------- outputs


def write_predictions(result: PredictionResult, path: str | Path) -> Path:
    """CSV, JSON or Parquet by the suffix; one row per segment. CSV joins multi-label labels with ';'
    (the manifest convention); JSON holds the rows with the run, classes, threshold and failures."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"unknown output format {path.suffix!r}: use .csv, .json or .parquet", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = result.table
    if fmt == "csv":
        if result.task == "multi_label":
            table = table.assign(labels=table["labels"].map(";".join))
        table.to_csv(path, index=False)
    elif fmt == "parquet":
        table.to_parquet(path, index=False)
    else:
        document = {
            "run": str(result.unit),
            "model": result.model_name,
            "task": result.task,
            "classes": list(result.classes),
            **({"threshold": result.threshold} if result.threshold is not None else {}),
            # json, not pandas' to_json: that rounds floats to 10 digits; missing values become null.
            "predictions": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
            "failures": [{"input": f.input, "segment": f.segment, "message": f.message} for f in result.failures],
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def plot_timeline(result: PredictionResult, path: str | Path) -> Path:
    """Each class's probability over segment time, one panel per input (the first ten); segments
    without times (text inputs) are placed by their index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    if result.table.empty:
        raise EmoError("nothing to plot: no input was predicted", path=path)
    names = list(dict.fromkeys(result.table["input"]))[:MAX_PLOTTED_INPUTS]
    figure, axes = plt.subplots(len(names), 1, figsize=(9, 2.4 * len(names) + 0.6), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10" if len(result.classes) <= 10 else "tab20")
    for ax, name in zip(axes[:, 0], names):
        part = result.table[result.table["input"] == name]
        timed = part["start_s"].notna().all() and part["end_s"].notna().all()
        if timed:
            edges = np.append(part["start_s"].to_numpy(float), part["end_s"].to_numpy(float)[-1])
            ax.set_xlabel("time (s)")
        else:
            edges = np.arange(len(part) + 1, dtype=float)
            ax.set_xlabel("segment")
        for k, cls in enumerate(result.classes):
            values = part[PROBABILITY_PREFIX + cls].to_numpy()
            ax.stairs(values, edges, color=colours(k % colours.N), label=cls, linewidth=1.6)
        if result.threshold is not None:
            ax.axhline(result.threshold, color="grey", linestyle=":", linewidth=1)
        ax.set_title(Path(name).name if len(name) > 60 else name, fontsize=9, loc="left")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("probability")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    hidden = len(dict.fromkeys(result.table["input"])) - len(names)
    if hidden:
        figure.suptitle(f"first {len(names)} inputs ({hidden} more not shown)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
