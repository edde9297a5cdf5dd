"""FER2013 (Goodfellow et al. 2013, "Challenges in Representation Learning: A report on three machine learning
contests", ICML 2013 workshop; the Kaggle challenge "Challenges in Representation Learning: Facial
Expression Recognition Challenge"): 35887 grey 48x48 face images found by web image search, in seven
classes, released as Training (28709), PublicTest (3589) and PrivateTest (3589).

Layout read: the image-folder copy of the release, `<split>/<class>/<Usage>_<number>.jpg` (e.g.
`train/angry/Training_3908.jpg`, `test/happy/PrivateTest_10077120.jpg`), at any depth, any subset of the
three parts. The class comes from the folder (angry, disgust, fear, happy, neutral, sad, surprise) and the
part from the name's prefix: Training -> split train, PublicTest -> valid, PrivateTest -> test (the
challenge's final test). Images named like `PrivateTest_123.jpg4.jpg` are augmented copies that some
copies add; they are skipped (noted). The numbers are not the CSV's row numbers and two Training numbers
occur in two classes each, so sample_id is `<class>/<name>`.

The original release is one CSV (`fer2013.csv`: emotion, pixels, Usage) of pixel strings; emo reads images
from files (`video_path`, a one-frame video), so the CSV is not read. The image copies are JPEG
re-encodings of those pixels. No subject is known: `speaker` and `fold` are empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import AdapterOptions, DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import IMAGE_SUFFIXES, count_notes, media_files

# The release's class order (its emotion codes 0..6), named in emo's words.
FOLDER_CLASSES = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy", "sad": "sad",
                  "surprise": "surprised", "neutral": "neutral"}
EMOTIONS = tuple(FOLDER_CLASSES.values())
USAGE_SPLITS = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
RELEASE_COUNTS = {  # the release's images per part and class (fer2013.csv's Usage and emotion columns)
    "Training": {"angry": 3995, "disgust": 436, "fearful": 4097, "happy": 7215, "sad": 4830, "surprised": 3171,
                 "neutral": 4965},
    "PublicTest": {"angry": 467, "disgust": 56, "fearful": 496, "happy": 895, "sad": 653, "surprised": 415,
                   "neutral": 607},
    "PrivateTest": {"angry": 491, "disgust": 55, "fearful": 528, "happy": 879, "sad": 594, "surprised": 416,
                    "neutral": 626},
}
_NAME = re.compile(r"^(?P<usage>Training|PublicTest|PrivateTest)_(?P<number>\d+)$")
_AUGMENTED = re.compile(r"^(Training|PublicTest|PrivateTest)_\d+\.(jpe?g|png)\d+$", re.IGNORECASE)


def parse_file(path: Path) -> dict | None:
    """Class, part and number of a FER2013 image; None for an augmented copy; DatasetError otherwise."""
    if _AUGMENTED.match(path.stem):
        return None
    match = _NAME.match(path.stem)
    if match is None:
        raise DatasetError(f"not a FER2013 image name: expected <Training|PublicTest|PrivateTest>_<number> such as "
                           f"PrivateTest_10077120.jpg, got {path.name!r}", path=path)
    label = FOLDER_CLASSES.get(path.parent.name.lower())
    if label is None:
        raise DatasetError(f"not in a FER2013 class folder ({', '.join(FOLDER_CLASSES)}): {path.parent.name!r}",
                           path=path)
    return {"usage": match["usage"], "label": label, "class_folder": path.parent.name.lower()}


class Fer2013Options(AdapterOptions):
    train_part: Literal["Training", "PublicTest"] = "Training"
    """The release part that trains (split train): Training (the release's protocol, PublicTest validates), or
    PublicTest, for heads on top of expression models trained on FER2013 Training, whose outputs on their own
    training images say little about unseen faces (Training is then not read)."""


class Fer2013Adapter(DatasetAdapter):
    name = "fer2013"
    summary = "FER2013 face images: 7 expressions from class folders, Training/PublicTest/PrivateTest from names"
    needs_on_disk = (
        "the image-folder copy of the release: <split>/<class>/<Usage>_<number>.jpg at any depth, e.g. "
        "test/happy/PrivateTest_10077120.jpg; the release (fer2013.csv, pixels) is on Kaggle, "
        "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge "
        "(a Kaggle account), and its CSV is not read"
    )
    licence = Licence(
        name="unclear (the ICML 2013 challenge's terms; images found by web search)",
        url="https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge",
        meaning="research use under the challenge's terms; the images' own rights are not cleared: cite "
        "Goodfellow et al. 2013 and use it for research and evaluation only",
    )
    default_extraction = (DefaultExtractor(modality="visual", preset="face-mobilenet"),)
    shared_labels = {e: e for e in EMOTIONS}
    Options = Fer2013Options

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("FER2013 root is not a folder", path=root)
        rows, augmented = [], 0
        for path in media_files(root, IMAGE_SUFFIXES):
            info = parse_file(path)
            if info is None:
                augmented += 1
                continue
            split = USAGE_SPLITS[info["usage"]]
            if self.options.train_part == "PublicTest":
                if info["usage"] == "Training":
                    continue
                split = "train" if info["usage"] == "PublicTest" else split
            rows.append({
                "sample_id": f"{info['class_folder']}/{path.stem}",
                "split": split,
                "label": info["label"],
                "video_path": str(path.resolve()),
                "usage": info["usage"],
            })
        if not rows:
            found = " (fer2013.csv is there: emo reads the image-folder copy, not the pixel CSV)" if any(
                root.rglob("fer2013.csv")) else ""
            raise DatasetError(f"no FER2013 images found (expected files like test/happy/PrivateTest_10077120.jpg)"
                               f"{found}", path=root)
        table = pd.DataFrame(rows)
        table["usage"] = table["usage"].astype("string")
        notes = []
        for usage, release in RELEASE_COUNTS.items():
            part = table[table["usage"] == usage]
            if len(part):
                notes += count_notes(part["label"].value_counts().to_dict(), release, f"{usage} images")
        absent = [usage for usage in RELEASE_COUNTS if not (table["usage"] == usage).any()
                  and not (usage == "Training" and self.options.train_part == "PublicTest")]
        if absent:
            splits = [USAGE_SPLITS[usage] for usage in absent]
            notes.append(f"holds no {' or '.join(absent)} images: split {', '.join(splits)} "
                         f"{'is' if len(splits) == 1 else 'are'} empty")
        if augmented:
            notes.append(f"skipped {augmented} augmented copies (names like PrivateTest_N.jpg0.jpg)")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "the release's parts: train = Training, valid = PublicTest, test = PrivateTest (the "
                "challenge's final test)",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
