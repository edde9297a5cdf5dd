"""Transcripts and segmentation for emo predict (emocli/prediction/segments.py)."""

from __future__ import annotations

import pytest

from emocli.core.errors import DatasetError
from emocli.prediction.segments import (
    Cue,
    Window,
    clip_cues,
    parse_subtitles,
    read_transcript,
    sidecar_transcript,
    windows,
)

SRT = """\ufeff1
00:00:00,500 --> 00:00:02,250
<i>Hello</i> there,
how are you?

2
00:00:03,000 --> 00:01:04,5
Fine.

"""

VTT = """WEBVTT - a header line

NOTE this block is a comment
spanning two lines

intro
00:01.000 --> 00:02.500 align:start position:10%
<v Ann>Hi <c.loud>Bob</c></v>

01:00:00.000 --> 01:00:01.000
late
"""


def test_srt_cues_have_times_and_plain_text():
    cues = parse_subtitles(SRT)
    assert cues == [Cue(0.5, 2.25, "Hello there, how are you?"), Cue(3.0, 64.5, "Fine.")]


def test_vtt_skips_header_and_notes_and_reads_optional_hours_and_settings():
    cues = parse_subtitles(VTT)
    assert cues == [Cue(1.0, 2.5, "Hi Bob"), Cue(3600.0, 3601.0, "late")]


def test_windows_line_endings_are_accepted():
    assert parse_subtitles(SRT.replace("\n", "\r\n")) == parse_subtitles(SRT)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("1\nnot a timing\nhello\n", 1, "expected a cue timing"),
        ("1\n00:00:01,000 --> soon\nhello\n", 2, "malformed cue timing"),
        ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:05,000 --> 00:00:04,000\nback\n", 6, "ends"),
    ],
)
def test_malformed_subtitles_name_the_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "clip.srt"
    path.write_text(text)
    with pytest.raises(DatasetError) as caught:
        read_transcript(path)
    message = str(caught.value)
    assert str(path) in message and f"line {line}" in message and problem in message


def test_text_transcript_is_one_untimed_cue_per_line(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text("first line\n\n  second line  \n")
    assert read_transcript(path) == [Cue(None, None, "first line"), Cue(None, None, "second line")]


def test_empty_or_non_utf8_transcripts_are_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DatasetError, match="no text"):
        read_transcript(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_transcript(latin)


def test_sidecar_prefers_subtitles_over_plain_text(tmp_path):
    media = tmp_path / "clip.mp4"
    media.write_bytes(b"")
    assert sidecar_transcript(media) is None
    (tmp_path / "clip.txt").write_text("hello")
    assert sidecar_transcript(media) == tmp_path / "clip.txt"
    (tmp_path / "clip.vtt").write_text("WEBVTT\n")
    assert sidecar_transcript(media) == tmp_path / "clip.vtt"
    (tmp_path / "clip.srt").write_text("")
    assert sidecar_transcript(media) == tmp_path / "clip.srt"


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (3.0, [(0, 3.0)]),  # shorter than a window: the whole medium
        (5.9, [(0, 5.9)]),  # the 1.9 s rest is under half a window: joined to the first
        (6.0, [(0, 4), (4, 6.0)]),  # a rest of half a window is kept
        (10.0, [(0, 4), (4, 8), (8, 10.0)]),
        (9.0, [(0, 4), (4, 9.0)]),
        (8.0, [(0, 4), (4, 8)]),
    ],
)
def test_windows_cover_the_medium_and_keep_or_join_the_last_partial_one(duration, expected):
    assert windows(duration, 4.0) == [Window(float(a), float(b)) for a, b in expected]


def test_windows_of_nothing_and_bad_window():
    assert windows(0.0, 4.0) == []
    with pytest.raises(ValueError):
        windows(5.0, 0)


def test_cues_are_clipped_to_the_medium():
    cues = [Cue(0.0, 1.0, "a"), Cue(1.5, 9.0, "b"), Cue(6.0, 7.0, "c")]
    assert clip_cues(cues, 5.0) == [Cue(0.0, 1.0, "a"), Cue(1.5, 5.0, "b")]
    assert clip_cues(cues, None) == cues
