"""RAVDESS (Livingstone & Russo 2018): acted emotional speech (and song), audio and audio-video clips.

File names carry everything: `MM-VV-EE-II-SS-RR-AA.ext` = modality (01 audio-video, 02 video only,
03 audio only) - vocal channel (01 speech, 02 song) - emotion - intensity (01 normal, 02 strong) -
statement (01, 02) - repetition (01, 02) - actor (01..24; odd male, even female).

One sample per clip: the audio-only file (03) and the audio-video mp4 (01) of the same clip share a
sample_id, the name without the modality field. Video-only files (02) are skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from emocli.core.errors import DatasetError
from emocli.core.paths import resolved
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import (
    AdapterOptions,
    Checksum,
    DatasetAdapter,
    DefaultExtractor,
    Licence,
    RemoteFile,
)

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MEDIA_SUFFIXES = (".wav", ".flac", ".mp4")
AUDIO_SUFFIXES = (".wav", ".flac")
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
N_ACTORS = 24
TEST_ACTORS = range(21, 25)  # the common speaker-independent split: train 1-20, test 21-24
FOLD_SIZE = 4  # CFN-SR / MSAF: fold i holds out actors 4i+1..4i+4, five folds
N_FOLDS = 5

_FIELD = re.compile(r"^\d\d$")
_CODES = {
    "modality": {"01": "audio-video", "02": "video", "03": "audio"},
    "vocal channel": {"01": "speech", "02": "song"},
    "emotion": {f"{i + 1:02d}": name for i, name in enumerate(EMOTIONS)},
    "intensity": {"01": "normal", "02": "strong"},
    "statement": {"01": 1, "02": 2},
    "repetition": {"01": 1, "02": 2},
    "actor": {f"{a:02d}": a for a in range(1, N_ACTORS + 1)},
}


class RavdessOptions(AdapterOptions):
    vocal_channel: Literal["speech", "song", "both"] = "speech"
    """Which vocal channel to read: 01 speech (the literature's setup), 02 song, or both."""


def parse_name(path: Path) -> dict:
    """The seven fields of a RAVDESS file name, decoded; DatasetError naming the file when malformed."""
    fields = path.stem.split("-")
    names = list(_CODES)
    if len(fields) != len(names) or not all(_FIELD.match(f) for f in fields):
        raise DatasetError(
            f"not a RAVDESS file name: expected 7 two-digit fields MM-VV-EE-II-SS-RR-AA, got {path.stem!r}",
            path=path,
        )
    decoded = {}
    for field_name, code in zip(names, fields):
        if code not in _CODES[field_name]:
            raise DatasetError(f"unknown {field_name} code {code!r} in the file name", path=path)
        decoded[field_name] = _CODES[field_name][code]
    decoded["fields"] = fields
    return decoded


def _media_files(root: Path):
    """Media files at any depth under root (hidden files such as macOS '._' forks skipped), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(MEDIA_SUFFIXES):
                found.append(Path(folder) / name)
    return sorted(found)


class RavdessAdapter(DatasetAdapter):
    name = "ravdess"
    summary = "RAVDESS acted speech/song: 8 emotions from file names, 24 actors, CFN-SR actor folds"
    needs_on_disk = (
        "a folder with RAVDESS files at any depth, e.g. Actor_XX/03-01-EE-II-SS-RR-AA.wav (audio only, "
        ".wav/.flac) and/or 01-01-EE-II-SS-RR-AA.mp4 (audio-video); 02-* video-only files are skipped"
    )
    Options = RavdessOptions
    licence = Licence(
        name="CC BY-NC-SA 4.0",
        url="https://creativecommons.org/licenses/by-nc-sa/4.0/",
        meaning="non-commercial use only, share alike, attribution (commercial licences are sold separately)",
    )
    remote_files = (
        RemoteFile(
            url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
            name="Audio_Speech_Actors_01-24.zip",
            size=208_468_073,
            checksum=Checksum(
                algorithm="md5",
                value="bc696df654c87fed845eb13823edef8a",
                source="the md5 Zenodo record 1188976 lists for the file",
            ),
            unpack="zip",
            description="the 1440 speech clips, audio only (48 kHz WAV), Actor_01..Actor_24",
        ),
    )
    shared_labels = {e: e for e in EMOTIONS} | {"calm": "neutral"}  # calm is a low-arousal neutral
    default_extraction = (
        # Whisper base's encoder: offline, the strongest audio features measured here (docs/FEATURES.md), and
        # free of openSMILE's research-only licence.
        DefaultExtractor(modality="audio", preset="whisper-base"),
        # Per-clip OpenFace action units are not part of the release: used when a table is beside the clips.
        DefaultExtractor(modality="visual", preset="openface-au", requires="openface_au.parquet"),
    )

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("RAVDESS root is not a folder", path=root)
        channels = {"speech": {"speech"}, "song": {"song"}, "both": {"speech", "song"}}[
            self.options.vocal_channel
        ]

        clips: dict[str, dict] = {}
        notes: list[str] = []
        for path in _media_files(root):
            info = parse_name(path)
            if info["modality"] == "video" or info["vocal channel"] not in channels:
                continue
            suffix = path.suffix.lower()
            if info["modality"] == "audio-video" and suffix == ".mp4":
                role = "video"
            elif info["modality"] == "audio" and suffix in AUDIO_SUFFIXES:
                role = "audio"
            elif info["modality"] == "audio-video":
                role = "av_audio"  # the audio track of an AV clip saved on its own
            else:
                raise DatasetError("an audio-only (03) RAVDESS file must be .wav or .flac", path=path)
            target = resolved(path)
            if target is None:  # a link that loops: listed, and the scan goes on
                notes.append(f"{path}: a symbolic link that loops; skipped")
                continue
            sample_id = "-".join(info["fields"][1:])
            clip = clips.setdefault(sample_id, {"info": info})
            if role in clip:
                raise DatasetError(
                    f"two files for clip {sample_id}: {clip[role]} and {path}; keep one", path=path
                )
            clip[role] = target

        if not clips:
            raise DatasetError(
                "no RAVDESS clips found (expected files like 03-01-05-01-02-01-12.wav or "
                f"01-01-05-01-02-01-12.mp4 for the {self.options.vocal_channel} channel)",
                path=root,
            )

        rows = []
        for sample_id, clip in clips.items():
            info = clip["info"]
            actor = info["actor"]
            audio = clip.get("audio") or clip.get("av_audio") or clip.get("video")
            video = clip.get("video")
            rows.append(
                {
                    "sample_id": sample_id,
                    "speaker": f"actor_{actor:02d}",
                    "split": "test" if actor in TEST_ACTORS else "train",
                    "fold": (actor - 1) // FOLD_SIZE if actor <= FOLD_SIZE * N_FOLDS else pd.NA,
                    "label": info["emotion"],
                    "text": STATEMENTS[info["statement"]],
                    "audio_path": str(audio),
                    "video_path": str(video) if video is not None else pd.NA,
                    "clip_key": f"01-{sample_id}",
                    "actor": actor,
                    "gender": "male" if actor % 2 else "female",
                    "vocal_channel": info["vocal channel"],
                    "intensity": info["intensity"],
                    "statement": info["statement"],
                    "repetition": info["repetition"],
                    "language": "en",
                }
            )
        table = pd.DataFrame(rows).sort_values(["actor", "sample_id"], kind="stable")
        for column in ("actor", "statement", "repetition"):
            table[column] = table[column].astype("Int64")
        for column in ("clip_key", "gender", "vocal_channel", "intensity", "language"):
            table[column] = table[column].astype("string")

        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "speaker-independent: train = actors 1-20, test = actors 21-24; no valid "
                "(training carves one from train)",
                "fold": "CFN-SR/MSAF actor folds: fold i (0..4) holds out actors 4i+1..4i+4; "
                "actors 21-24 are never held out (fold NA)",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
