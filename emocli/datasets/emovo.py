"""EMOVO (Costantini et al. 2014, "EMOVO Corpus: an Italian Emotional Speech Database", LREC 2014;
Fondazione Ugo Bordoni): six actors (three female, three male) reading 14 Italian sentences in seven
emotions; 588 recordings, stereo 48 kHz (rab-f1-b1.wav is mono).

Layout of the release: one folder per actor, `f1/ f2/ f3/ m1/ m2/ m3/`, of `<emotion>-<actor>-<sentence>.wav`,
the emotion in Italian: dis (disgusto), gio (gioia, joy), neu (neutrale), pau (paura, fear), rab (rabbia,
anger), sor (sorpresa, surprise), tri (tristezza, sadness); sentences b1-b3, d1-d2, l1-l4 and n1-n5. The
texts are not in the release's files, so `text` is left empty and the sentence code kept (`sentence`).
"""

from __future__ import annotations

import re
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import DatasetAdapter, DefaultExtractor, Licence
from emocli.datasets.common import AUDIO_SUFFIXES, count_notes, folds_of, media_files

EMOTION_CODES = {"neu": "neutral", "gio": "happy", "tri": "sad", "rab": "angry", "pau": "fearful", "dis": "disgust",
                 "sor": "surprised"}
EMOTIONS = tuple(EMOTION_CODES.values())
ACTORS = ("f1", "f2", "f3", "m1", "m2", "m3")
SENTENCES = ("b1", "b2", "b3", "d1", "d2", "l1", "l2", "l3", "l4", "n1", "n2", "n3", "n4", "n5")
RELEASE_COUNTS = dict.fromkeys(EMOTIONS, 84)
FOLDS = (("f1", "m1"), ("f2", "m2"), ("f3", "m3"))  # a woman and a man in each
TEST_FOLD = 2
_NAME = re.compile(r"^(?P<emotion>[a-z]{3})-(?P<actor>[fm]\d)-(?P<sentence>[a-z]\d)$")


def parse_name(path: Path) -> dict:
    """Emotion, actor and sentence of an EMOVO file name; DatasetError naming the file otherwise."""
    match = _NAME.match(path.stem.lower())
    if match is None or match["actor"] not in ACTORS or match["sentence"] not in SENTENCES:
        raise DatasetError(f"not an EMOVO file name: expected <emotion>-<actor>-<sentence> such as dis-f1-b1 "
                           f"(actors {', '.join(ACTORS)}), got {path.stem!r}", path=path)
    if match["emotion"] not in EMOTION_CODES:
        raise DatasetError(f"unknown EMOVO emotion {match['emotion']!r} (one of {', '.join(EMOTION_CODES)})",
                           path=path)
    folder = path.parent.name.lower()
    if folder in ACTORS and folder != match["actor"]:
        raise DatasetError(f"the file name says actor {match['actor']}, its folder {path.parent.name}", path=path)
    return match.groupdict()


class EmovoAdapter(DatasetAdapter):
    name = "emovo"
    summary = "EMOVO acted Italian speech: 7 emotions from file names, 6 actors, 3 speaker folds"
    needs_on_disk = (
        "the release's actor folders f1/ f2/ f3/ m1/ m2/ m3/ (at any depth) of <emotion>-<actor>-<sentence>.wav, "
        "e.g. f1/dis-f1-b1.wav; the corpus is distributed by Fondazione Ugo Bordoni (Costantini et al., LREC 2014)"
    )
    licence = Licence(
        name="research use (Fondazione Ugo Bordoni; no licence text published with the corpus)",
        url="http://lrec-conf.org/proceedings/lrec2014/summaries/591.html",
        meaning="research use; cite Costantini et al., LREC 2014, and ask Fondazione Ugo Bordoni before anything else",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="whisper-base"),)
    shared_labels = {e: e for e in EMOTIONS}

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("EMOVO root is not a folder", path=root)
        fold_of = folds_of(FOLDS)
        rows, seen = [], {}
        for path in media_files(root, AUDIO_SUFFIXES):
            info = parse_name(path)
            sample_id = f"{info['emotion']}-{info['actor']}-{info['sentence']}"
            if sample_id in seen:
                raise DatasetError(f"two files for recording {sample_id}: {seen[sample_id]} and {path}; keep one",
                                   path=path)
            seen[sample_id] = path
            fold = fold_of[info["actor"]]
            rows.append({
                "sample_id": sample_id,
                "speaker": info["actor"],
                "split": "test" if fold == TEST_FOLD else "train",
                "fold": fold,
                "label": EMOTION_CODES[info["emotion"]],
                "audio_path": str(path.resolve()),
                "sentence": info["sentence"],
                "gender": "female" if info["actor"].startswith("f") else "male",
                "language": "it",
            })
        if not rows:
            raise DatasetError("no EMOVO recordings found (expected files like f1/dis-f1-b1.wav)", path=root)
        table = pd.DataFrame(rows)
        for column in ("sentence", "gender", "language"):
            table[column] = table[column].astype("string")
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "speaker-independent: test = actors f3 and m3, train = the other four",
                "fold": "3 speaker folds of a woman and a man: (f1, m1), (f2, m2), (f3, m3)",
            },
            options=self.options.model_dump(mode="json"),
            notes=count_notes(table["label"].value_counts().to_dict(), RELEASE_COUNTS, "recordings"),
        )
