"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller 2010, University of Toronto,
doi:10.5683/SP2/E8H2MF): two actresses, aged 64 (OAF, "older adult female") and 26 (YAF, "younger adult
female"), each speaking 200 target words in the carrier phrase "Say the word _" in seven emotions:
2800 recordings, 200 per speaker and emotion.

Layout of the release: one folder per speaker and emotion, `OAF_angry/`, ..., `YAF_pleasant_surprise/`,
holding `<SPEAKER>_<word>_<emotion>.wav`, emotion one of angry, disgust, fear, happy, neutral, ps
(pleasant surprise), sad. The speaker is taken from the folder where there is one: the release names one
file `OA_bite_neutral.wav` (in `OAF_neutral/`). Five files keep the release's own formats (emo's audio
reader decodes them all): `YAF_germ_angry.wav` and `YAF_neat_fear.wav` are AIFF under a .wav name,
`OAF_back_angry.wav` and `YAF_beg_sad.wav` are 32-bit float at 44.1 kHz (peaks above full scale),
`OAF_food_fear.wav` is 96 kHz; the rest are 16-bit 24414 Hz mono.
"""

from __future__ import annotations

import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import AUDIO_SUFFIXES, count_notes, folds_of, media_files

# The file names' emotion codes, and the folders' spellings of them across the release's copies.
EMOTION_CODES = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
                 "disgust": "disgust", "ps": "surprised"}
FOLDER_EMOTIONS = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
                   "disgust": "disgust", "pleasant_surprise": "surprised", "pleasant_surprised": "surprised"}
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SPEAKERS = {"OAF": 64, "YAF": 26}  # speaker -> age; both are women
RELEASE_COUNTS = dict.fromkeys(EMOTIONS, 400)
FOLDS = (("OAF",), ("YAF",))  # one speaker per fold
TEST_FOLD = 1
CARRIER = "Say the word {word}"
_NAME = re.compile(r"^(?P<speaker>[A-Za-z]+)_(?P<word>[A-Za-z]+)_(?P<emotion>[A-Za-z]+)$")
_FOLDER = re.compile(r"^(?P<speaker>OAF|YAF)_(?P<emotion>[A-Za-z_]+)$", re.IGNORECASE)


def parse_file(path: Path) -> dict:
    """Speaker, word and emotion of a TESS recording, from its name and its speaker/emotion folder."""
    match = _NAME.match(path.stem)
    if match is None or match["emotion"].lower() not in EMOTION_CODES:
        raise DatasetError(f"not a TESS file name: expected SPEAKER_word_emotion with emotion one of "
                           f"{', '.join(EMOTION_CODES)}, such as OAF_bite_neutral, got {path.stem!r}", path=path)
    emotion = EMOTION_CODES[match["emotion"].lower()]
    speaker = match["speaker"].upper()
    folder = _FOLDER.match(path.parent.name)
    if folder is not None:
        folder_emotion = FOLDER_EMOTIONS.get(folder["emotion"].lower())
        if folder_emotion != emotion:
            raise DatasetError(f"the file name says {emotion}, its folder {path.parent.name}", path=path)
        folder_speaker = folder["speaker"].upper()
        if not folder_speaker.startswith(speaker):
            raise DatasetError(f"the file name says speaker {speaker}, its folder {path.parent.name}", path=path)
        speaker = folder_speaker
    elif speaker not in SPEAKERS:
        raise DatasetError(f"unknown TESS speaker {speaker!r} (OAF or YAF), and no OAF_/YAF_ folder says which",
                           path=path)
    return {"speaker": speaker, "word": match["word"].lower(), "code": match["emotion"].lower(), "label": emotion}


class TessAdapter(DatasetAdapter):
    name = "tess"
    summary = "TESS, Toronto emotional speech set: 2 English-speaking actresses, 200 words x 7 emotions, 2 folds"
    needs_on_disk = (
        "the release's folders OAF_<emotion>/ and YAF_<emotion>/ (at any depth) of <SPEAKER>_<word>_<emotion>.wav, "
        "e.g. OAF_angry/OAF_back_angry.wav; download the 14 folders from the University of Toronto dataverse "
        "(https://doi.org/10.5683/SP2/E8H2MF)"
    )
    licence = Licence(
        name="CC BY-NC-ND 4.0",
        url="https://creativecommons.org/licenses/by-nc-nd/4.0/",
        meaning="non-commercial use only, no modified copies shared, attribution (Dupuis & Pichora-Fuller 2010)",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS}  # surprised is TESS's "pleasant surprise"

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("TESS root is not a folder", path=root)
        fold_of = folds_of(FOLDS)
        rows, seen = [], {}
        for path in media_files(root, AUDIO_SUFFIXES):
            info = parse_file(path)
            sample_id = f"{info['speaker']}_{info['word']}_{info['code']}"  # the release's name, speaker corrected
            if sample_id in seen:
                raise DatasetError(f"two files for recording {sample_id}: {seen[sample_id]} and {path}; keep one",
                                   path=path)
            seen[sample_id] = path
            fold = fold_of[info["speaker"]]
            rows.append({
                "sample_id": sample_id,
                "speaker": info["speaker"],
                "split": "test" if fold == TEST_FOLD else "train",
                "fold": fold,
                "label": info["label"],
                "text": CARRIER.format(word=info["word"]),
                "audio_path": str(path.resolve()),
                "word": info["word"],
                "gender": "female",
                "age": SPEAKERS[info["speaker"]],
                "language": "en",
            })
        if not rows:
            raise DatasetError("no TESS recordings found (expected files like OAF_angry/OAF_back_angry.wav)", path=root)
        table = pd.DataFrame(rows)
        for column in ("word", "gender", "language"):
            table[column] = table[column].astype("string")
        table["age"] = table["age"].astype("Int64")
        notes = count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "recordings")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "speaker-independent: test = YAF (the younger speaker), train = OAF",
                "fold": "2 speaker folds: 0 = OAF, 1 = YAF",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
