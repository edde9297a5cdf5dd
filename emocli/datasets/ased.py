"""ASED, the Amharic Speech Emotion Dataset v1 (Retta et al. 2022, "A New Amharic Speech Emotion Dataset and
Classification Benchmark", ACM TALLIP, doi:10.1145/3529759): 65 speakers (25 female, 40 male), each
recording 25 emotion-specific sentences and two common sentences in five emotions, twice; the 2474
recordings that at least five of eight judges accepted.

Layout of the release (github.com/Ethio2021/ASED_V1): folders `01Neutral/ 02Fearful/ 03Happy/ 04Sad/
05Angry/` of `<e><k>-<sentence>-<repetition>-<gender>-<speaker>.wav`: e the emotion's letter (n, f, h, s, a)
and k its folder's number, sentence 01-07 (01 and 02 the common sentences; 03-07 differ per emotion),
repetition 01-02, gender 01 female / 02 male, speaker 01-65. The release names one file with a capital
letter (`S4-04-02-01-29.wav`); letters are read in any case. Five speakers (09, 15, 21, 23, 25) have one
file each under the other gender code: a speaker's gender is the code most of their files carry (which
gives the README's 25 women and 40 men). The Amharic texts are not in the release's files.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import AUDIO_SUFFIXES, count_notes, media_files, speaker_folds

EMOTION_CODES = {"n1": "neutral", "h3": "happy", "s4": "sad", "a5": "angry", "f2": "fearful"}
EMOTIONS = tuple(EMOTION_CODES.values())
FOLDER_EMOTIONS = {"01neutral": "neutral", "02fearful": "fearful", "03happy": "happy", "04sad": "sad",
                   "05angry": "angry"}
GENDER_CODES = {"01": "female", "02": "male"}
RELEASE_COUNTS = {"neutral": 522, "happy": 486, "sad": 470, "angry": 486, "fearful": 510}
N_FOLDS = 5
_NAME = re.compile(r"^(?P<emotion>[a-z]\d)-(?P<sentence>\d\d)-(?P<repetition>\d\d)-(?P<gender>\d\d)-(?P<speaker>\d\d)$")


def parse_name(path: Path) -> dict:
    """Emotion, sentence, repetition, gender code and speaker of an ASED file name; DatasetError otherwise."""
    match = _NAME.match(path.stem.lower())
    if match is None:
        raise DatasetError(f"not an ASED file name: expected <emotion><folder>-<sentence>-<repetition>-<gender>-"
                           f"<speaker> such as a5-03-01-02-50, got {path.stem!r}", path=path)
    if match["emotion"] not in EMOTION_CODES:
        raise DatasetError(f"unknown ASED emotion code {match['emotion']!r} (one of {', '.join(EMOTION_CODES)})",
                           path=path)
    if match["gender"] not in GENDER_CODES:
        raise DatasetError(f"unknown ASED gender code {match['gender']!r} (01 female, 02 male)", path=path)
    label = EMOTION_CODES[match["emotion"]]
    folder = FOLDER_EMOTIONS.get(path.parent.name.lower())
    if folder is not None and folder != label:
        raise DatasetError(f"the file name says {label}, its folder {path.parent.name}", path=path)
    return {**match.groupdict(), "label": label}


class AsedAdapter(DatasetAdapter):
    name = "ased"
    summary = "ASED acted Amharic speech: 5 emotions from file names, 65 speakers, 5 speaker folds"
    needs_on_disk = (
        "the release's folders 01Neutral/ 02Fearful/ 03Happy/ 04Sad/ 05Angry/ (at any depth) of "
        "<e><k>-<sentence>-<repetition>-<gender>-<speaker>.wav, e.g. 05Angry/a5-03-01-02-50.wav: a clone of "
        "https://github.com/Ethio2021/ASED_V1"
    )
    licence = Licence(
        name="none stated",
        url="https://github.com/Ethio2021/ASED_V1",
        meaning="its authors publish no licence: research use, cite Retta et al. 2022 (doi:10.1145/3529759), "
        "and ask them before anything else",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS}

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("ASED root is not a folder", path=root)
        rows, seen = [], {}
        for path in media_files(root, AUDIO_SUFFIXES):
            info = parse_name(path)
            sample_id = path.stem.lower()
            if sample_id in seen:
                raise DatasetError(f"two files for recording {sample_id}: {seen[sample_id]} and {path}; keep one",
                                   path=path)
            seen[sample_id] = path
            rows.append({
                "sample_id": sample_id,
                "speaker": info["speaker"],
                "label": info["label"],
                "audio_path": str(path.resolve()),
                "sentence": info["sentence"],
                "repetition": int(info["repetition"]),
                "gender_code": info["gender"],
                "language": "am",
            })
        if not rows:
            raise DatasetError("no ASED recordings found (expected files like 05Angry/a5-03-01-02-50.wav)", path=root)
        table = pd.DataFrame(rows)
        gender_of = {speaker: Counter(codes).most_common(1)[0][0]
                     for speaker, codes in table.groupby("speaker")["gender_code"]}
        table["gender"] = table["speaker"].map(lambda speaker: GENDER_CODES[gender_of[speaker]])
        fold_of = speaker_folds(table["speaker"], table["label"], N_FOLDS)
        table["fold"] = table["speaker"].map(fold_of)
        test_fold = max(fold_of.values())
        table["split"] = table["fold"].map(lambda fold: "test" if fold == test_fold else "train")
        table = table.drop(columns="gender_code")
        for column in ("sentence", "gender", "language"):
            table[column] = table[column].astype("string")
        table["repetition"] = table["repetition"].astype("Int64")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": f"speaker-independent: test = fold {test_fold}, train = the other folds",
                "fold": f"{N_FOLDS} folds of whole speakers, class mix balanced (scikit-learn StratifiedGroupKFold, "
                "unshuffled)",
            },
            options=self.options.model_dump(mode="json"),
            notes=count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "recordings"),
        )
