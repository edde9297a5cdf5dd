"""Transcripts and segmentation for `emo predict`: subtitle cues (.srt, .vtt), plain transcripts (.txt),
and fixed windows over long media.

A segment is one prediction unit: an interval of a media file (or of nothing, for text alone) with the
text spoken in it, if known. Subtitle cues carry both; without them, media is cut into fixed windows.
Parsing errors name the file and the line, so a transcript can be fixed where it is wrong.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.io import TEXT_LIMIT, read_bytes
from emocli.core.types import Cue

# A reader of our own rather than `srt` (https://github.com/cdown/srt) or webvtt-py: one short parser reads
# both formats and the variants sidecar files have in practice (a WebVTT file without its header, either
# decimal mark, 1-3 fraction digits), and its errors name the file and line. `srt` 3.5 reads SRT alone and
# reports character offsets; webvtt-py 0.6 refuses a file without the WEBVTT header, takes only '.' in
# WebVTT times, and reads SRT through a second reader.
SUBTITLE_SUFFIXES = (".srt", ".vtt")
TRANSCRIPT_SUFFIXES = (*SUBTITLE_SUFFIXES, ".txt")

# 00:01:02,345 (SRT) or 00:01:02.345 / 01:02.345 (WebVTT: hours optional); a few writers put a dot in
# SRT or a comma in VTT, and some drop digits of the fraction, so both separators and 1-3 digits pass.
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")  # VTT cue settings may follow the end
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # HTML-like styling (<i>, <c.loud>, <v Bob>) and SSA overrides
# Segments shorter than this say nothing (and a tiny --window over a long file would make millions); an
# hour is longer than any model here reads as one segment.
MIN_WINDOW_S = 0.1
MAX_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Window:
    """An interval of media, seconds."""

    start_s: float
    end_s: float


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def _read_text(path: Path) -> str:
    data = read_bytes(path, TEXT_LIMIT, DatasetError)  # a regular file of bounded size: no FIFO, no /dev/zero
    try:
        return data.decode("utf-8-sig")  # a BOM is common in files saved by subtitle editors
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(f"not UTF-8 (byte offset {error.start}, line {line}); save it as UTF-8", path=path) from None


def parse_subtitles(text: str, path: str | Path = "<subtitles>") -> list[Cue]:
    """Cues of an SRT or WebVTT document, in file order. Blocks are separated by blank lines; a block's
    timing line (`start --> end`) may follow an identifier line; its text lines are joined by spaces and
    stripped of styling tags. Headers and NOTE/STYLE/REGION blocks are skipped; a block without a timing
    line is an error naming the line, as are cues that end before they start."""
    cues: list[Cue] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    block: list[tuple[int, str]] = []
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            block.append((number, line))
            continue
        if block:
            cue = _parse_block(block, path, first=not cues)
            if cue is not None:
                cues.append(cue)
            block = []
    return cues


def _parse_block(block: list[tuple[int, str]], path: str | Path, first: bool) -> Cue | None:
    head = block[0][1].strip()
    if head.startswith("WEBVTT") or head.split(" ")[0] in ("NOTE", "STYLE", "REGION"):
        return None
    timing = next((i for i, (_, line) in enumerate(block[:2]) if "-->" in line), None)
    if timing is None:
        number = block[0][0]
        raise DatasetError(f"line {number}: expected a cue timing 'HH:MM:SS,mmm --> HH:MM:SS,mmm', got {head!r}", path=path)
    number, line = block[timing]
    match = _TIMING.match(line)
    if match is None:
        raise DatasetError(f"line {number}: malformed cue timing {line.strip()!r}", path=path)
    start, end = _seconds(*match.groups()[:4]), _seconds(*match.groups()[4:])
    if end <= start:
        raise DatasetError(f"line {number}: the cue ends ({end:.3f} s) before it starts ({start:.3f} s)", path=path)
    # Styling tags go, then entities are decoded ("&amp;" is "&", "&lt;i&gt;" is text, not a tag).
    words = " ".join(html.unescape(_TAG.sub("", text)).strip() for _, text in block[timing + 1 :])
    return Cue(start, end, " ".join(words.split()))


def read_transcript(path: str | Path) -> list[Cue]:
    """A sidecar or input transcript: timed cues from .srt/.vtt; one untimed cue per non-empty line of a .txt."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() in SUBTITLE_SUFFIXES:
        cues = [cue for cue in parse_subtitles(text, path) if cue.text]
    else:
        cues = [Cue(None, None, line.strip()) for line in text.splitlines() if line.strip()]
    if not cues:
        raise DatasetError("the transcript holds no text", path=path)
    return cues


def overlaps(cues: list[Cue]) -> list[str]:
    """Notes on timed cues that overlap (two speakers at once, or a file's timing errors): each is still
    predicted over its own span, so a segment of speech may be read twice."""
    timed = sorted((c for c in cues if c.start_s is not None and c.end_s is not None), key=lambda c: c.start_s)
    found = [(a, b) for a, b in zip(timed, timed[1:]) if b.start_s < a.end_s]
    if not found:
        return []
    first, second = found[0]
    return [f"{len(found)} pair(s) of cues overlap (first: {first.start_s:.3f}-{first.end_s:.3f} s and "
            f"{second.start_s:.3f}-{second.end_s:.3f} s); each cue is predicted over its own span"]


def sidecar_transcript(media: str | Path) -> Path | None:
    """The transcript next to a media file with the same stem: clip.srt, then clip.vtt, then clip.txt."""
    media = Path(media)
    for suffix in TRANSCRIPT_SUFFIXES:
        for candidate in (media.with_suffix(suffix), media.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def windows(duration_s: float, window_s: float) -> list[Window]:
    """Fixed windows of `window_s` over [0, duration_s).

    The last, partial window is kept as its own segment when it is at least half a window long; a
    shorter rest is joined to the window before it, so no audio is dropped and no segment is too short
    to say anything (the last window is then up to 1.5 windows long). Media no longer than 1.5 windows
    is therefore a single segment.
    """
    if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:  # also NaN
        raise ValueError(f"the window must be from {MIN_WINDOW_S} to {MAX_WINDOW_S} seconds, not {window_s}")
    if duration_s <= 0:
        return []
    count = max(1, int(duration_s // window_s))
    if duration_s - count * window_s >= window_s / 2:
        count += 1
    bounds = [min(k * window_s, duration_s) for k in range(count)] + [duration_s]
    return [Window(start, end) for start, end in zip(bounds, bounds[1:])]


def clip_cues(cues: list[Cue], duration_s: float | None) -> list[Cue]:
    """Timed cues cut to the media: cues starting after its end are dropped, a cue running past it ends there."""
    if duration_s is None:
        return list(cues)
    kept = []
    for cue in cues:
        if cue.start_s is None or cue.end_s is None:
            kept.append(cue)
        elif cue.start_s < duration_s:
            kept.append(Cue(cue.start_s, min(cue.end_s, duration_s), cue.text))
    return kept
