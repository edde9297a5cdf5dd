"""What `emo predict` reads: inputs (files, folders, manifests, text) expanded into sources, each a medium
with its transcript, a text, or a dialogue of a manifest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emocli.core.errors import EmoError, ExtractionError
from emocli.core.types import Cue
from emocli.prediction.segments import TRANSCRIPT_SUFFIXES, read_transcript, sidecar_transcript

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".json"})
TEXT_INPUT = "--text"  # the input name of a literal text



@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None  # None: the container does not say
    has_audio: bool
    has_video: bool
    audio_s: float | None = None  # each stream's own length, where the container gives it
    video_s: float | None = None

    def describe_streams(self) -> str:
        """'audio 3.0 s, video 6.0 s'."""
        return ", ".join(f"{name} {length:.1f} s" for name, length in (("audio", self.audio_s), ("video", self.video_s))
                         if length is not None)


def probe_media(path: str | Path) -> MediaInfo:
    """Streams and duration of a media file; ExtractionError naming the file when it cannot be opened."""
    from emocli.features.audio.io import SOUNDFILE_SUFFIXES

    path = Path(path)
    if not path.is_file():
        kind = "no such file" if not path.exists() else "not a regular file (a folder, a pipe or a device); not read"
        raise ExtractionError(kind, path=path)
    if path.stat().st_size == 0:
        raise ExtractionError("file is empty", path=path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        import soundfile

        try:
            info = soundfile.info(str(path))
            return MediaInfo(info.frames / info.samplerate, True, False, info.frames / info.samplerate)
        except (soundfile.SoundFileError, RuntimeError):
            pass  # misnamed or a codec this libsndfile lacks: FFmpeg may read it, as load_audio does
    import av

    try:
        with av.open(str(path)) as container:
            audio, video = container.streams.audio, container.streams.video
            lengths = {kind: max((float(s.duration * s.time_base) for s in streams if s.duration and s.time_base),
                                 default=None)
                       for kind, streams in (("audio", audio), ("video", video))}
            duration = container.duration / 1_000_000 if container.duration else None
            if duration is None:
                duration = max((x for x in lengths.values() if x is not None), default=None)
            return MediaInfo(duration, bool(audio), bool(video), lengths["audio"], lengths["video"])
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
    text_source: str | None = None  # where the text came from: "--text", a sidecar file, "whisper-base (en)"...

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


def collect_sources(inputs: Iterable[str | Path], text: str | None = None, *,
                    allow_outside: bool = False) -> tuple[list[Source], list[PredictFailure]]:
    """Expand the inputs (files, folders, manifests) into sources; what cannot be read becomes a failure.
    A manifest's media must lie in its folder unless `allow_outside`."""
    sources: list[Source] = []
    failures: list[PredictFailure] = []
    inputs = [Path(i) for i in inputs]
    if not inputs:
        if text is None or not text.strip():
            raise EmoError("nothing to predict on: give media files, folders, a manifest, or --text")
        return [Source(TEXT_INPUT, transcript=[Cue(None, None, text.strip())], text_source="--text")], []
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
                sources.extend(_manifest_sources(path, allow_outside))
            except EmoError as error:
                failures.append(PredictFailure(str(path), error.problem if error.path == path else str(error)))
        elif path.suffix.lower() in TRANSCRIPT_SUFFIXES:
            try:
                sources.append(Source(str(path), transcript=read_transcript(path), transcript_path=path,
                                      text_source=str(path)))
            except EmoError as error:
                failures.append(PredictFailure(str(path), error.problem))
        else:
            sources.append(_media_source(path))
    if text is not None:
        for source in sources:
            if source.media is not None and source.segments is None:
                source.transcript, source.transcript_path = [Cue(None, None, text.strip())], None
                source.text_source = "--text"
    return sources, failures


def _media_source(path: Path) -> Source:
    kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "audio"
    return Source(str(path), **{kind: path}, transcript_path=sidecar_transcript(path))


def _manifest_sources(path: Path, allow_outside: bool = False) -> list[Source]:
    """Rows of a manifest: the rows of one dialogue_id form one source (a dialogue), other rows one each."""
    from emocli.datasets.manifest import ManifestAdapter
    from emocli.features.runner import sample_records

    # A missing media file fails its own row when it is opened (probe_media), not the whole manifest.
    adapter = ManifestAdapter(require_labels=False, check_media=False, allow_outside=allow_outside)
    table = adapter.load(path).table
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
            segments=segments, text_source=str(path),
        ))
    return sources


