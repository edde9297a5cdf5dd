"""Berlin EmoDB (Burkhardt et al. 2005, "A Database of German Emotional Speech", Interspeech): ten German
actors (five female, five male), ten everyday sentences, seven emotions, recorded in an anechoic chamber.

File names carry everything: `SSTTTEV.wav` = speaker (2 digits: 03, 08-16) - text (3: a01..a07, b01..b10) -
emotion (1 letter, German initials) - version (1 letter: a, b, c... for repeated takes), e.g. 03a01Fa.wav.
The release has 535 utterances, those that at least 80 % of 20 listeners recognised.

Emotion letters: W Wut (anger), L Langeweile (boredom), E Ekel (disgust), A Angst (fear), F Freude
(happiness), T Trauer (sadness), N neutral. Labels are named with emo's words (angry, bored, ...).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import AdapterOptions, DatasetAdapter, DefaultExtractor, Licence, RemoteFile
from emocli.datasets.common import without_loops

EMOTION_CODES = {"N": "neutral", "F": "happy", "T": "sad", "W": "angry", "A": "fearful", "E": "disgust", "L": "bored"}
EMOTIONS = tuple(EMOTION_CODES.values())
# The release's per-emotion counts (the database's documentation): what a complete copy holds.
RELEASE_COUNTS = {"neutral": 79, "happy": 71, "sad": 62, "angry": 127, "fearful": 69, "disgust": 46, "bored": 81}
SPEAKERS = {  # speaker code -> (gender, age), from the database's documentation
    "03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32), "11": ("male", 26),
    "12": ("male", 30), "13": ("female", 32), "14": ("female", 35), "15": ("male", 25), "16": ("female", 31),
}
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# Five speaker folds of two speakers each (one female, one male where the ten allow), in code order.
FOLDS = (("03", "08"), ("09", "10"), ("11", "13"), ("12", "14"), ("15", "16"))
TEST_FOLD = 4  # the `split` protocol: speakers 15 and 16 are the test speakers
AUDIO_SUFFIXES = (".wav", ".flac")
_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$")


class EmodbOptions(AdapterOptions):
    include_boredom: bool = True
    """Keep the boredom class (81 utterances). Other corpora have no boredom: a model trained across corpora
    reads the shared classes only (the `corpora` dataset drops it itself)."""


def parse_name(path: Path) -> dict:
    """Speaker, text, emotion and version of an EmoDB file name; DatasetError naming the file otherwise."""
    match = _NAME.match(path.stem)
    if match is None or match["speaker"] not in SPEAKERS or match["text"] not in SENTENCES:
        raise DatasetError(
            f"not an EmoDB file name: expected speaker(2) text(3) emotion(1) version(1) such as 03a01Fa, "
            f"got {path.stem!r}", path=path
        )
    if match["emotion"] not in EMOTION_CODES:
        raise DatasetError(f"unknown EmoDB emotion letter {match['emotion']!r} (one of {''.join(EMOTION_CODES)})",
                           path=path)
    return match.groupdict()


def _audio_files(root: Path) -> list[Path]:
    """Audio files at any depth under root, hidden ones (macOS '._' forks) skipped, in name order."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in files
                  if not name.startswith(".") and name.lower().endswith(AUDIO_SUFFIXES)]
    return sorted(without_loops(found), key=lambda p: p.name)


class EmodbAdapter(DatasetAdapter):
    name = "emodb"
    summary = "Berlin EmoDB acted German speech: 7 emotions from file names, 10 actors, 5 speaker folds"
    needs_on_disk = "a folder holding EmoDB's wav/ files at any depth, named like 03a01Fa.wav (the release's download.zip unpacked)"
    Options = EmodbOptions
    licence = Licence(
        name="CC0 1.0 (as audEERING republishes it; the authors ask for a citation of Burkhardt et al. 2005)",
        url="https://creativecommons.org/publicdomain/zero/1.0/",
        meaning="no restriction; cite Burkhardt et al., Interspeech 2005",
    )
    remote_files = (
        RemoteFile(
            url="http://emodb.bilderbar.info/download/download.zip",
            name="download.zip",
            size=None,
            unpack="zip",
            into="emodb",
            description="the 535 utterances (16 kHz WAV in wav/) with the release's label files; the host publishes "
            "no checksum or size: emo checks the unpacked files (535, the release's per-emotion counts)",
        ),
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS if e != "bored"}  # no other corpus has boredom

    @classmethod
    def verify_download(cls, folder: Path) -> None:
        """The host publishes no checksum: a download must hold the release's 535 utterances, per emotion."""
        counts = dict.fromkeys(EMOTION_CODES.values(), 0)
        for path in _audio_files(folder):
            match = _NAME.match(path.stem)
            if match and match["emotion"] in EMOTION_CODES:
                counts[EMOTION_CODES[match["emotion"]]] += 1
        if counts != RELEASE_COUNTS:
            found = ", ".join(f"{label} {n}" for label, n in counts.items())
            raise DatasetError(f"the download does not hold EmoDB's release (utterances per emotion: {found}; the release "
                               f"has {sum(RELEASE_COUNTS.values())}); it was removed", path=folder)

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("EmoDB root is not a folder", path=root)
        rows, seen = [], {}
        for path in _audio_files(root):
            info = parse_name(path)
            if path.stem in seen:
                raise DatasetError(f"two files for utterance {path.stem}: {seen[path.stem]} and {path}; keep one", path=path)
            seen[path.stem] = path
            label = EMOTION_CODES[info["emotion"]]
            if label == "bored" and not self.options.include_boredom:
                continue
            speaker = info["speaker"]
            fold = next(i for i, pair in enumerate(FOLDS) if speaker in pair)
            gender, age = SPEAKERS[speaker]
            rows.append({
                "sample_id": path.stem,
                "speaker": f"speaker_{speaker}",
                "split": "test" if fold == TEST_FOLD else "train",
                "fold": fold,
                "label": label,
                "text": SENTENCES[info["text"]],
                "audio_path": str(path.resolve()),
                "gender": gender,
                "age": age,
                "sentence": info["text"],
                "version": info["version"],
                "language": "de",
            })
        if not rows:
            raise DatasetError("no EmoDB utterances found (expected files like wav/03a01Fa.wav)", path=root)
        table = pd.DataFrame(rows)
        for column in ("gender", "sentence", "version", "language"):
            table[column] = table[column].astype("string")
        table["age"] = table["age"].astype("Int64")
        names = EMOTIONS if self.options.include_boredom else tuple(e for e in EMOTIONS if e != "bored")
        notes = []
        counts = table["label"].value_counts().to_dict()
        short = {label: (counts.get(label, 0), n) for label, n in RELEASE_COUNTS.items()
                 if label in names and counts.get(label, 0) != n}
        if short:
            notes.append("not the release's 535 utterances: " + ", ".join(
                f"{label} {have} (release {n})" for label, (have, n) in sorted(short.items())))
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=names, task="single_label"),
            protocols={
                "split": "speaker-independent: test = speakers 15 and 16, train = the other eight (valid carved from train)",
                "fold": "5 speaker folds of two speakers each: (03, 08), (09, 10), (11, 13), (12, 14), (15, 16)",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
