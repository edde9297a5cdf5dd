"""nEMO (Christop 2024, "nEMO: Dataset of Emotional Speech in Polish", LREC-COLING 2024): nine actors
(four female, five male) reading 90 phonetically chosen Polish sentences in six emotional states; 4481
recordings.

Layout of the release (github.com/amu-cai/nEMO): `samples/<file_id>` and the label file `data.tsv` (UTF-8,
tab-separated) with columns file_id (`{speaker}_{emotion}_{sentence}.wav`), emotion (anger, fear,
happiness, neutral, sadness, surprised), raw_text (the orthographic transcription), normalized_text,
speaker_id, gender, age. Labels, speakers and texts come from data.tsv; the release pads speaker_id with
spaces, which are stripped. Speaker MK0 recorded no surprised utterance and MP0 only 256 of the 540.
"""

from __future__ import annotations

import csv
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import count_notes, folds_of

LABEL_FILE = "data.tsv"
AUDIO_FOLDER = "samples"
EMOTION_NAMES = {"neutral": "neutral", "happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "fearful",
                 "surprised": "surprised"}
EMOTIONS = tuple(EMOTION_NAMES.values())
COLUMNS = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age")
RELEASE_COUNTS = {"neutral": 809, "happy": 749, "sad": 769, "angry": 749, "fearful": 736, "surprised": 669}
# Five folds of whole speakers, a woman and a man in each where the nine allow; MK0 (no surprised) and MP0
# (256 recordings) share one, so that the test fold holds two complete speakers.
FOLDS = (("EB0", "KS0"), ("IC0", "WR0"), ("MK0", "MP0"), ("SM0",), ("KD0", "TP0"))
TEST_FOLD = 4


class NemoAdapter(DatasetAdapter):
    name = "nemo"
    summary = "nEMO acted Polish speech: 6 emotions and texts from data.tsv, 9 actors, 5 speaker folds"
    needs_on_disk = (
        "data.tsv and samples/*.wav as in the release: a clone of https://github.com/amu-cai/nEMO "
        "(also on Hugging Face as amu-cai/nEMO)"
    )
    licence = Licence(
        name="CC BY-NC-SA 4.0",
        url="https://creativecommons.org/licenses/by-nc-sa/4.0/",
        meaning="non-commercial use only, share alike, attribution (Christop, LREC-COLING 2024)",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS}

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        labels_path = root / LABEL_FILE
        if not labels_path.is_file():
            raise DatasetError(f"nEMO's label file {LABEL_FILE} is not in the folder (expected {LABEL_FILE} beside "
                               f"{AUDIO_FOLDER}/)", path=root)
        fold_of = folds_of(FOLDS)
        rows, seen = [], {}
        for row_number, record in enumerate(_read_label_file(labels_path), start=1):
            emotion = EMOTION_NAMES.get(record["emotion"].strip())
            if emotion is None:
                raise DatasetError(f"unknown emotion {record['emotion']!r} (nEMO's: {', '.join(EMOTION_NAMES)})",
                                   path=labels_path, row=row_number)
            speaker = record["speaker_id"].strip()
            if speaker not in fold_of:
                raise DatasetError(f"unknown speaker {speaker!r} (nEMO's nine: {', '.join(sorted(fold_of))})",
                                   path=labels_path, row=row_number)
            file_id = record["file_id"].strip()
            if file_id in seen:
                raise DatasetError(f"{file_id} is listed twice (rows {seen[file_id]} and {row_number})",
                                   path=labels_path, row=row_number)
            seen[file_id] = row_number
            audio = root / AUDIO_FOLDER / file_id
            if not audio.is_file():
                raise DatasetError(f"{file_id}: its audio {audio} is not there", path=labels_path, row=row_number)
            try:
                age = int(record["age"])
            except ValueError:
                raise DatasetError(f"age {record['age']!r} is not a whole number",
                                   path=labels_path, row=row_number) from None
            fold = fold_of[speaker]
            rows.append({
                "sample_id": Path(file_id).stem,
                "speaker": speaker,
                "split": "test" if fold == TEST_FOLD else "train",
                "fold": fold,
                "label": emotion,
                "text": record["raw_text"].strip(),
                "audio_path": str(audio.resolve()),
                "normalized_text": record["normalized_text"].strip(),
                "sentence": Path(file_id).stem.rsplit("_", 1)[-1],
                "gender": record["gender"].strip(),
                "age": age,
                "language": "pl",
            })
        if not rows:
            raise DatasetError("no recordings listed", path=labels_path)
        table = pd.DataFrame(rows)
        for column in ("normalized_text", "sentence", "gender", "language"):
            table[column] = table[column].astype("string")
        table["age"] = table["age"].astype("Int64")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "speaker-independent: test = KD0 and TP0, train = the other seven",
                "fold": "5 speaker folds: (EB0, KS0), (IC0, WR0), (MK0, MP0), (SM0), (KD0, TP0)",
            },
            options=self.options.model_dump(mode="json"),
            notes=count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "recordings"),
        )


def _read_label_file(path: Path) -> list[dict[str, str]]:
    """The rows of data.tsv; DatasetError for a file that is not UTF-8 or lacks a column."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"missing column(s) {', '.join(missing)} (nEMO's: {', '.join(COLUMNS)})", path=path)
            records = list(reader)
    except UnicodeDecodeError as error:
        raise DatasetError(f"not UTF-8 (byte {error.start})", path=path) from None
    for number, record in enumerate(records, start=1):
        if any(record.get(c) is None for c in COLUMNS):
            raise DatasetError("fewer fields than the header", path=path, row=number)
    return records
