"""URDU (Latif et al. 2018, "Cross Lingual Speech Emotion Recognition: Urdu vs. Western Languages",
arXiv:1812.10411): 400 utterances of unscripted Urdu speech cut from TV talk shows on YouTube, 100 in each
of four emotions (angry, happy, neutral, sad).

Layout of the release (github.com/siddiquelatif/URDU-Dataset): folders `Angry/ Happy/ Neutral/ Sad/` of
`S<G><speaker>_F<file>_<E><number>.wav`: G is the speaker's gender (M or F), the speaker number is per gender
(SM1 and SF1 are two people), F<file> numbers the speaker's files, E is the emotion (A, H, N, S) and
<number> numbers the files of that emotion. The README counts 38 speakers (27 male, 11 female); the file
names hold 29 (18 male, 11 female).

**Speakers and classes are confounded**: the speakers are whoever spoke in a show, and 26 of the 29 speak
in one emotion only. SM5 alone holds 72 of the 100 neutral utterances (and 8 happy ones); all 100 angry
utterances come from four male speakers. A within-corpus score here partly measures who speaks, and
speaker-independent folds cannot be balanced per class (one fold holds SM5's 72 neutral utterances, two
hold no angry one): read its figures with that in mind.
"""

from __future__ import annotations

import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import AUDIO_SUFFIXES, count_notes, media_files, speaker_folds

EMOTION_CODES = {"N": "neutral", "H": "happy", "S": "sad", "A": "angry"}
EMOTIONS = tuple(EMOTION_CODES.values())
FOLDER_EMOTIONS = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}
RELEASE_COUNTS = dict.fromkeys(EMOTIONS, 100)
N_FOLDS = 5
_NAME = re.compile(r"^S(?P<gender>[MF])(?P<speaker>\d+)_F(?P<file>\d+)_(?P<emotion>[A-Z])(?P<number>\d+)$")


def parse_file(path: Path) -> dict:
    """Speaker, gender and emotion of an URDU file name; DatasetError naming the file otherwise."""
    match = _NAME.match(path.stem)
    if match is None:
        raise DatasetError(f"not an URDU file name: expected S<M|F><speaker>_F<file>_<A|H|N|S><number> such as "
                           f"SM1_F10_A010, got {path.stem!r}", path=path)
    if match["emotion"] not in EMOTION_CODES:
        raise DatasetError(f"unknown URDU emotion letter {match['emotion']!r} (one of {''.join(EMOTION_CODES)})",
                           path=path)
    label = EMOTION_CODES[match["emotion"]]
    folder = FOLDER_EMOTIONS.get(path.parent.name.lower())
    if folder is not None and folder != label:
        raise DatasetError(f"the file name says {label}, its folder {path.parent.name}", path=path)
    return {
        "speaker": f"S{match['gender']}{int(match['speaker'])}",
        "gender": {"M": "male", "F": "female"}[match["gender"]],
        "label": label,
        "file_number": int(match["file"]),
    }


class UrduAdapter(DatasetAdapter):
    name = "urdu"
    summary = "URDU: unscripted Urdu talk-show speech, 4 emotions, 29 speakers confounded with classes, 5 speaker folds"
    needs_on_disk = (
        "the release's Angry/ Happy/ Neutral/ Sad/ folders (at any depth) of S<M|F><speaker>_F<n>_<A|H|N|S><n>.wav, "
        "e.g. Angry/SM1_F10_A010.wav: a clone of https://github.com/siddiquelatif/URDU-Dataset"
    )
    licence = Licence(
        name="research use only (the authors' README)",
        url="https://github.com/siddiquelatif/URDU-Dataset",
        meaning="\"anyone can use this data only for research purposes\"; cite Latif et al. 2018 (arXiv:1812.10411)",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS}

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("URDU root is not a folder", path=root)
        rows, seen = [], {}
        for path in media_files(root, AUDIO_SUFFIXES):
            info = parse_file(path)
            if path.stem in seen:
                raise DatasetError(f"two files for utterance {path.stem}: {seen[path.stem]} and {path}; keep one",
                                   path=path)
            seen[path.stem] = path
            rows.append({"sample_id": path.stem, "audio_path": str(path.resolve()), "language": "ur", **info})
        if not rows:
            raise DatasetError("no URDU utterances found (expected files like Angry/SM1_F10_A010.wav)", path=root)
        table = pd.DataFrame(rows)
        fold_of = speaker_folds(table["speaker"], table["label"], N_FOLDS)
        table["fold"] = table["speaker"].map(fold_of)
        test_fold = max(fold_of.values())
        table["split"] = table["fold"].map(lambda fold: "test" if fold == test_fold else "train")
        for column in ("gender", "language"):
            table[column] = table[column].astype("string")
        table["file_number"] = table["file_number"].astype("Int64")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": f"speaker-independent: test = fold {test_fold}, train = the other folds; speakers are "
                "confounded with classes (see docs/DATASETS.md)",
                "fold": f"{N_FOLDS} folds of whole speakers, class mix balanced as far as they allow "
                "(scikit-learn StratifiedGroupKFold, unshuffled)",
            },
            options=self.options.model_dump(mode="json"),
            notes=count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "utterances"),
        )
