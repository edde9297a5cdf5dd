"""CASIA Chinese emotional speech corpus, public subset (Institute of Automation, Chinese Academy of Sciences):
four professional speakers reading Mandarin sentences in six emotions, 400 sentences each (300 texts read
in every emotion, 100 whose words carry their emotion): 9600 utterances, sold by the Chinese LDC. The
subset that circulates publicly holds 50 of the texts read in every emotion (numbered 201-250):
4 x 6 x 50 = 1200 utterances, 16 kHz mono.

Layout: `<speaker>/<emotion>/<sentence>.wav` (speakers liuchanhg, wangzhe, zhaoquanyin, ZhaoZuoxiang;
emotions angry, fear, happy, neutral, sad, surprise), beside the corpus's own label files (.lab, .tag,
.peak: syllable timings, not read). The texts come from `相同的文本201--250.txt` ("the same texts 201-250",
GB18030-encoded, one `<number>. <sentence>` per line) beside the speaker folders; without it `text` is empty
(noted). The file names say nothing of gender.
"""

from __future__ import annotations

import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, GatedAccess, Licence
from emocli.datasets.common import AUDIO_SUFFIXES, count_notes, folds_of, media_files

FOLDER_EMOTIONS = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
                   "surprise": "surprised"}
EMOTIONS = tuple(FOLDER_EMOTIONS.values())
SPEAKERS = ("liuchanhg", "wangzhe", "zhaoquanyin", "ZhaoZuoxiang")
RELEASE_COUNTS = dict.fromkeys(EMOTIONS, 200)
FOLDS = tuple((speaker,) for speaker in SPEAKERS)  # one speaker per fold
TEST_FOLD = 3
SENTENCE_FILE = "相同的文本201--250.txt"
SENTENCE_ENCODING = "gb18030"
_SENTENCE_LINE = re.compile(r"^\s*(?P<number>\d+)\.\s*(?P<text>.*?)\s*$")


def parse_file(path: Path) -> dict:
    """Speaker, emotion and sentence number of a CASIA file from its folders and name."""
    emotion = FOLDER_EMOTIONS.get(path.parent.name.lower())
    speaker = path.parent.parent.name
    if emotion is None or speaker not in SPEAKERS or not path.stem.isdigit():
        raise DatasetError(f"not a CASIA file: expected <speaker>/<emotion>/<number>.wav with speaker one of "
                           f"{', '.join(SPEAKERS)} and emotion one of {', '.join(FOLDER_EMOTIONS)}, got "
                           f"{speaker}/{path.parent.name}/{path.name}", path=path)
    return {"speaker": speaker, "label": emotion, "sentence": int(path.stem)}


def read_sentences(path: Path) -> dict[int, str]:
    """sentence number -> text from the corpus's sentence list; DatasetError naming the file and line."""
    try:
        lines = path.read_bytes().decode(SENTENCE_ENCODING).splitlines()
    except UnicodeDecodeError as error:
        raise DatasetError(f"not {SENTENCE_ENCODING} text (byte {error.start})", path=path) from None
    sentences = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _SENTENCE_LINE.match(line)
        if match is None:
            raise DatasetError(f"line {number}: expected '<number>. <sentence>', got {line!r}", path=path)
        sentences[int(match["number"])] = match["text"]
    return sentences


class CasiaAdapter(DatasetAdapter):
    name = "casia"
    summary = "CASIA Mandarin acted speech, public subset: 6 emotions from folders, 4 speakers, 4 speaker folds"
    needs_on_disk = (
        "<speaker>/<emotion>/<number>.wav folders of the public subset (at any depth, e.g. "
        "'CASIA database/wangzhe/angry/201.wav') and, for the texts, 相同的文本201--250.txt beside the speaker "
        "folders"
    )
    licence = Licence(
        name="unclear (the full corpus is sold by the Chinese LDC; the public subset carries no licence)",
        url="http://www.chineseldc.org",
        meaning="terms unknown for the public subset: emo uses it for evaluation only; cite CASIA (Institute of "
        "Automation, Chinese Academy of Sciences) and ask the Chinese LDC for any other use",
    )
    gated = GatedAccess(
        what="the full CASIA corpus (9600 utterances)",
        request_url="http://www.chineseldc.org",
        how="sold by the Chinese LDC; the public subset of 1200 utterances circulates in copies without a licence",
        place="the <speaker>/<emotion>/<number>.wav folders",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS}

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("CASIA root is not a folder", path=root)
        fold_of = folds_of(FOLDS)
        rows, seen, speaker_folders = [], {}, set()
        for path in media_files(root, AUDIO_SUFFIXES):
            info = parse_file(path)
            sample_id = f"{info['speaker']}-{path.parent.name.lower()}-{info['sentence']}"
            if sample_id in seen:
                raise DatasetError(f"two files for utterance {sample_id}: {seen[sample_id]} and {path}; keep one",
                                   path=path)
            seen[sample_id] = path
            speaker_folders.add(path.parent.parent.parent)
            fold = fold_of[info["speaker"]]
            rows.append({
                "sample_id": sample_id,
                "speaker": info["speaker"],
                "split": "test" if fold == TEST_FOLD else "train",
                "fold": fold,
                "label": info["label"],
                "audio_path": str(path.resolve()),
                "sentence": info["sentence"],
                "language": "zh",
            })
        if not rows:
            raise DatasetError("no CASIA utterances found (expected files like wangzhe/angry/201.wav)", path=root)
        table = pd.DataFrame(rows)
        notes = count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "utterances of the public subset")
        lists = sorted(folder / SENTENCE_FILE for folder in speaker_folders if (folder / SENTENCE_FILE).is_file())
        if lists:
            sentences = read_sentences(lists[0])
            table["text"] = table["sentence"].map(sentences)
            unknown = sorted(set(table.loc[table["text"].isna(), "sentence"]))
            if unknown:
                notes.append(f"{lists[0].name} has no text for sentence(s) {', '.join(map(str, unknown))}")
        else:
            notes.append(f"no {SENTENCE_FILE} beside the speaker folders: no texts")
        table["sentence"] = table["sentence"].astype("Int64")
        table["language"] = table["language"].astype("string")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "speaker-independent: test = ZhaoZuoxiang, train = the other three",
                "fold": "4 speaker folds, one speaker each: liuchanhg, wangzhe, zhaoquanyin, ZhaoZuoxiang",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
