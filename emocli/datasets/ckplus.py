"""CK+48: the Extended Cohn-Kanade dataset (Lucey et al. 2010, "The Extended Cohn-Kanade Dataset (CK+): A
complete dataset for action unit and emotion-specified expression", CVPR workshops) as the face-expression
literature commonly uses it: the last three frames (the expression's peak) of each of the 327 sequences
that carry an emotion label, cropped to the face and shrunk to 48x48 grey PNGs; 981 images of 118 subjects.

Layout read: `CK+48/<class>/S<subject>_<sequence>_<frame>.png` (at any depth), classes anger, contempt,
disgust, fear, happy, sadness, surprise (the release's emotion codes 1-7; contempt has no counterpart among
emo's shared emotions). `speaker` is the subject; the three frames of a sequence always share a fold.
The release itself (`cohn-kanade-images/` sequences with `Emotion/` label files) is not read.
"""

from __future__ import annotations

import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, GatedAccess, Licence
from emocli.datasets.common import IMAGE_SUFFIXES, count_notes, media_files, speaker_folds

# The release's emotion codes 1-7, named in emo's words.
FOLDER_CLASSES = {"anger": "angry", "contempt": "contempt", "disgust": "disgust", "fear": "fearful", "happy": "happy",
                  "sadness": "sad", "surprise": "surprised"}
EMOTIONS = tuple(FOLDER_CLASSES.values())
RELEASE_COUNTS = {"angry": 135, "contempt": 54, "disgust": 177, "fearful": 75, "happy": 207, "sad": 84,
                  "surprised": 249}  # three frames of each labelled sequence
N_FOLDS = 5
_NAME = re.compile(r"^(?P<subject>S\d{3})_(?P<sequence>\d{3})_(?P<frame>\d{8})$")


def parse_file(path: Path) -> dict:
    """Subject, sequence, frame and class of a CK+48 image; DatasetError naming the file otherwise."""
    match = _NAME.match(path.stem)
    if match is None:
        raise DatasetError(f"not a CK+ image name: expected S<subject>_<sequence>_<frame> such as S010_004_00000017, "
                           f"got {path.stem!r}", path=path)
    label = FOLDER_CLASSES.get(path.parent.name.lower())
    if label is None:
        raise DatasetError(f"not in a CK+48 class folder ({', '.join(FOLDER_CLASSES)}): {path.parent.name!r}",
                           path=path)
    return {"subject": match["subject"], "sequence": f"{match['subject']}_{match['sequence']}",
            "frame": int(match["frame"]), "label": label}


class CkplusAdapter(DatasetAdapter):
    name = "ckplus"
    summary = "CK+48 posed face expressions: 7 classes (contempt included) from folders, 118 subjects, 5 subject folds"
    needs_on_disk = (
        "CK+48's class folders (at any depth) of S<subject>_<sequence>_<frame>.png, e.g. "
        "CK+48/happy/S010_006_00000013.png"
    )
    licence = Licence(
        name="CK+ agreement (non-commercial research use)",
        url="http://www.pitt.edu/~emotion/ck-spread.htm",
        meaning="non-commercial research use under the agreement its users sign; cite Lucey et al., CVPRW 2010",
    )
    gated = GatedAccess(
        what="the CK+ release (cohn-kanade-images/ and Emotion/)",
        request_url="http://www.pitt.edu/~emotion/ck-spread.htm",
        how="the Affect Analysis Group (University of Pittsburgh) gives it out under a signed agreement; emo reads "
        "the CK+48 crops made from it",
        place="the CK+48 class folders (anger/ ... surprise/)",
    )
    default_extraction = (DefaultExtractor(modality="visual", preset="face-mobilenet"),)
    shared_labels = {e: e for e in EMOTIONS if e != "contempt"}  # no other corpus has contempt

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("CK+48 root is not a folder", path=root)
        rows, seen = [], {}
        for path in media_files(root, IMAGE_SUFFIXES):
            info = parse_file(path)
            if path.stem in seen:
                raise DatasetError(f"two files for frame {path.stem}: {seen[path.stem]} and {path}; keep one",
                                   path=path)
            seen[path.stem] = path
            rows.append({
                "sample_id": path.stem,
                "speaker": info["subject"],
                "label": info["label"],
                "video_path": str(path.resolve()),
                "sequence": info["sequence"],
                "frame": info["frame"],
            })
        if not rows:
            raise DatasetError("no CK+48 images found (expected files like happy/S010_006_00000013.png)", path=root)
        table = pd.DataFrame(rows)
        labels_per_sequence = table.groupby("sequence")["label"].nunique()
        if (labels_per_sequence > 1).any():
            sequence = labels_per_sequence[labels_per_sequence > 1].index[0]
            raise DatasetError(f"the frames of sequence {sequence} are in different class folders", path=root)
        fold_of = speaker_folds(table["speaker"], table["label"], N_FOLDS)
        table["fold"] = table["speaker"].map(fold_of)
        test_fold = max(fold_of.values())
        table["split"] = table["fold"].map(lambda fold: "test" if fold == test_fold else "train")
        table["sequence"] = table["sequence"].astype("string")
        table["frame"] = table["frame"].astype("Int64")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": f"subject-independent: test = fold {test_fold}, train = the other folds",
                "fold": f"{N_FOLDS} folds of whole subjects, class mix balanced (scikit-learn StratifiedGroupKFold, "
                "unshuffled)",
            },
            options=self.options.model_dump(mode="json"),
            notes=count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "images"),
        )
