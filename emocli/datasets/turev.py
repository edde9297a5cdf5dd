"""TurEV-DB, the Turkish Emotion-Voice Database (Canpolat, Ormanoğlu & Zeyrek 2020, SLTU-CCURL 2020): six
speakers saying 82 single Turkish words in four emotions (angry, calm, happy, sad); 1735 recordings.

Layout of the release (github.com/Xeonen/TurEV-DB): `Sound Source/{Angry,Calm,Happy,Sad}/` of
`<speaker>_<code>_<word>.wav`, the code the emotion's: kz angry, sk calm, mt happy, hl sad. Only the
`Sound Source` folder is read (the root may be it or its parent): the repository's `Model Output for Test
Data` holds filtered copies of test recordings. Words are spelt in ASCII in the names (acik for açık, cay
for çay), so they are kept as `word` and `text` stays empty; the release names one take
`7895_hl_ogul1.wav` (the word ogul). Speaker 1157 recorded only angry and sad words, speaker 7895 29 happy
ones. The file names say nothing of gender.
"""

from __future__ import annotations

import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import AUDIO_SUFFIXES, count_notes, folds_of, without_loops

EMOTION_CODES = {"sk": "calm", "mt": "happy", "hl": "sad", "kz": "angry"}
EMOTIONS = tuple(EMOTION_CODES.values())
FOLDER_EMOTIONS = {"angry": "angry", "calm": "calm", "happy": "happy", "sad": "sad"}
SOURCE_FOLDER = "Sound Source"
SPEAKERS = ("1157", "1234", "1358", "1984", "6783", "7895")
RELEASE_COUNTS = {"calm": 408, "happy": 357, "sad": 483, "angry": 487}
FOLDS = (("1157", "1234"), ("1358", "1984"), ("6783", "7895"))  # in id order; each holds all four emotions
TEST_FOLD = 2
_NAME = re.compile(r"^(?P<speaker>\d+)_(?P<emotion>[a-z]{2})_(?P<word>[a-z]+)(?P<take>\d*)$")


def parse_name(path: Path) -> dict:
    """Speaker, emotion and word of a TurEV-DB file name; DatasetError naming the file otherwise."""
    match = _NAME.match(path.stem.lower())
    if match is None or match["speaker"] not in SPEAKERS:
        raise DatasetError(f"not a TurEV-DB file name: expected <speaker>_<emotion code>_<word> such as "
                           f"1157_kz_acik (speakers {', '.join(SPEAKERS)}), got {path.stem!r}", path=path)
    if match["emotion"] not in EMOTION_CODES:
        raise DatasetError(f"unknown TurEV-DB emotion code {match['emotion']!r} (one of {', '.join(EMOTION_CODES)})",
                           path=path)
    label = EMOTION_CODES[match["emotion"]]
    if FOLDER_EMOTIONS.get(path.parent.name.lower()) != label:
        raise DatasetError(f"the file name says {label}, its folder {path.parent.name}", path=path)
    return {"speaker": match["speaker"], "label": label, "word": match["word"]}


class TurevAdapter(DatasetAdapter):
    name = "turev"
    summary = "TurEV-DB acted Turkish single words: 4 emotions (calm included) from file names, 6 speakers, 3 folds"
    needs_on_disk = (
        f"the release's '{SOURCE_FOLDER}/' folder (or its parent) with Angry/ Calm/ Happy/ Sad/ of "
        "<speaker>_<kz|sk|mt|hl>_<word>.wav, e.g. Angry/1157_kz_acik.wav: a clone of https://github.com/Xeonen/TurEV-DB"
    )
    licence = Licence(
        name="CC BY-NC-ND 4.0 (the README; the repository's LICENSE file is the GPL-3.0, for its code)",
        url="https://creativecommons.org/licenses/by-nc-nd/4.0/",
        meaning="non-commercial use only, no modified copies shared, attribution (Canpolat et al., SLTU-CCURL 2020)",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {"calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry"}  # calm as RAVDESS's

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("TurEV-DB root is not a folder", path=root)
        source = root / SOURCE_FOLDER if (root / SOURCE_FOLDER).is_dir() else root
        class_folders = sorted(p for p in source.iterdir() if p.is_dir() and p.name.lower() in FOLDER_EMOTIONS)
        fold_of = folds_of(FOLDS)
        rows, seen = [], {}
        for folder in class_folders:
            for path in without_loops(sorted(folder.iterdir())):
                if path.name.startswith(".") or not path.name.lower().endswith(AUDIO_SUFFIXES):
                    continue
                info = parse_name(path)
                if path.stem in seen:
                    raise DatasetError(f"two files for recording {path.stem}: {seen[path.stem]} and {path}; keep one",
                                       path=path)
                seen[path.stem] = path
                fold = fold_of[info["speaker"]]
                rows.append({
                    "sample_id": path.stem,
                    "speaker": info["speaker"],
                    "split": "test" if fold == TEST_FOLD else "train",
                    "fold": fold,
                    "label": info["label"],
                    "audio_path": str(path.resolve()),
                    "word": info["word"],
                    "language": "tr",
                })
        if not rows:
            raise DatasetError(f"no TurEV-DB recordings found (expected '{SOURCE_FOLDER}/Angry/1157_kz_acik.wav' "
                               "or Angry/1157_kz_acik.wav in the root)", path=root)
        table = pd.DataFrame(rows)
        for column in ("word", "language"):
            table[column] = table[column].astype("string")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "speaker-independent: test = speakers 6783 and 7895, train = the other four",
                "fold": "3 folds of two speakers, in id order: (1157, 1234), (1358, 1984), (6783, 7895)",
            },
            options=self.options.model_dump(mode="json"),
            notes=count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "recordings"),
        )
