"""IEMOCAP (Busso et al. 2008): dyadic conversations of 10 actors in 5 sessions, categorical emotions.

Reads the IEMOCAP_full_release layout:

    SessionN/dialog/EmoEvaluation/<dialog>.txt  "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]"
    SessionN/dialog/transcriptions/<dialog>.txt  "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
    SessionN/sentences/wav/<dialog>/<utterance>.wav  the utterance audio
    SessionN/dialog/avi/DivX/<dialog>.avi            the dialogue video
    SessionN/dialog/wav/<dialog>.wav                 the dialogue audio

Each row has one timeline, the one every extractor reads (start_s/end_s apply to audio_path and
video_path alike). Option media="dialog" (default): the dialogue's wav (else the avi's audio track) and
avi, cut at the utterance's segment (a dialogue with neither falls back to the utterance wavs).
media="sentence": the utterance wav, whole (start_s/end_s and video_path NA). Both keep sentence_wav,
dialog_video and dialog_start_s/dialog_end_s as extra columns.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from emocli.core.errors import DatasetError
from emocli.core.paths import resolved
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import AdapterOptions, DatasetAdapter, DefaultExtractor, GatedAccess, Licence

# The codes of the EmoEvaluation files (majority label of the evaluators; xxx = no majority).
CODES = {
    "neu": "neutral", "hap": "happiness", "sad": "sadness", "ang": "anger", "exc": "excitement",
    "fru": "frustration", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other",
    "xxx": "no agreement",
}  # fmt: skip
# ERC setup (MultiEMO / SpikEmo order) and the 4-class setup (happy merged with excited).
CLASSES = {
    "6": (
        ("happiness", "sadness", "neutral", "anger", "excitement", "frustration"),
        {"hap": "happiness", "sad": "sadness", "neu": "neutral", "ang": "anger", "exc": "excitement",
         "fru": "frustration"},
    ),
    "4": (
        ("neutral", "happy", "sad", "angry"),
        {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"},
    ),
}  # fmt: skip
TEST_SESSION = 5

_EVAL_LINE = re.compile(
    r"^\[\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$"
)
_TRANSCRIPT_LINE = re.compile(r"^(Ses\S+)\s+\[[^\]]*\]:\s?(.*)$")
_UTTERANCE = re.compile(r"^(Ses\d\d)[FM]_.+_([FM])[^_]*$")
_SESSION_DIR = re.compile(r"^Session(\d+)$")


class IemocapOptions(AdapterOptions):
    classes: Literal["6", "4"] = "6"
    """"6": happiness, sadness, neutral, anger, excitement, frustration (ERC: MultiEMO, SpikEmo);
    "4": neutral, happy (+ excitement), sad, angry. Utterances with other labels are dropped."""
    media: Literal["dialog", "sentence"] = "dialog"
    """"dialog": audio_path = the dialogue wav (dialog/wav; else the avi), video_path = the dialogue avi,
    start_s/end_s = the utterance's segment in them. "sentence": audio_path = the utterance wav
    (sentences/wav), read whole; no video_path and no segment (audio + text models)."""

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value):
        return str(value) if isinstance(value, int) else value


def _real(path: Path) -> str | None:
    """The file's resolved path; None (absent) for a link that loops."""
    real = resolved(path)
    return str(real) if real is not None else None


def _read_text(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # a few releases carry latin-1 bytes in transcripts
    return text.splitlines()


def find_release(root: Path) -> tuple[Path, dict[int, Path]]:
    """The folder holding Session1..5 (root itself or root/IEMOCAP_full_release) and its sessions."""
    for candidate in (root, root / "IEMOCAP_full_release"):
        if candidate.is_dir():
            sessions = {}
            for entry in sorted(os.listdir(candidate)):
                match = _SESSION_DIR.match(entry)
                if match and (candidate / entry).is_dir():
                    sessions[int(match[1])] = candidate / entry
            if sessions:
                return candidate, sessions
    raise DatasetError(
        "no IEMOCAP sessions found: expected Session1..Session5 folders (IEMOCAP_full_release layout)",
        path=root,
    )


def parse_evaluation(path: Path) -> list[dict]:
    """The utterance lines of one EmoEvaluation file."""
    utterances = []
    dialog = path.stem
    for number, line in enumerate(_read_text(path), start=1):
        if not line.startswith("["):
            continue  # header, blank lines and the evaluators' C-/A- lines
        match = _EVAL_LINE.match(line)
        if match is None:
            raise DatasetError(
                f"line {number}: not an utterance line like "
                f"'[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]': {line!r}",
                path=path,
            )
        start, end, utterance, code, vad = match.groups()
        if code not in CODES:
            raise DatasetError(
                f"line {number}: unknown emotion code {code!r} for {utterance}; IEMOCAP codes are "
                f"{', '.join(CODES)}",
                path=path,
            )
        name = _UTTERANCE.match(utterance)
        if name is None or utterance.rsplit("_", 1)[0] != dialog:
            raise DatasetError(
                f"line {number}: utterance id {utterance!r} does not belong to dialog {dialog!r}", path=path
            )
        try:
            valence, arousal, dominance = (float(v) for v in vad.split(","))
        except ValueError:
            raise DatasetError(
                f"line {number}: [V, A, D] should be three numbers, got [{vad}]", path=path
            ) from None
        utterances.append(
            {
                "utterance": utterance,
                "dialog": dialog,
                "start_s": float(start),
                "end_s": float(end),
                "code": code,
                "speaker": name[1] + name[2],
                "gender": "female" if name[2] == "F" else "male",
                "valence": valence,
                "arousal": arousal,
                "dominance": dominance,
            }
        )
    return utterances


def parse_transcription(path: Path) -> dict[str, str]:
    texts = {}
    for line in _read_text(path):
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match:
            texts[match[1]] = match[2].strip()
    return texts


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


class IemocapAdapter(DatasetAdapter):
    name = "iemocap"
    summary = "IEMOCAP dyadic sessions: 6-class ERC (or 4-class) utterances, leave-one-session-out folds"
    needs_on_disk = (
        "IEMOCAP_full_release/Session{1..5}/: dialog/EmoEvaluation/*.txt (labels, times), "
        "dialog/transcriptions/*.txt (text), dialog/wav/<dialog>.wav and dialog/avi/DivX/<dialog>.avi "
        "(audio + video, cut per utterance), or sentences/wav/<dialog>/<utterance>.wav (media=sentence)"
    )
    Options = IemocapOptions
    licence = Licence(
        name="USC IEMOCAP release agreement",
        url="https://sail.usc.edu/iemocap/Data_Release_Form_IEMOCAP.pdf",
        meaning="research use under an agreement your institution signs; no redistribution",
    )
    gated = GatedAccess(
        what="IEMOCAP",
        request_url="https://sail.usc.edu/iemocap/iemocap_release.htm",
        how="send USC SAIL the release form signed for your institution; they reply with a download link",
        place="IEMOCAP_full_release/ (Session1..Session5)",
    )
    default_extraction = (
        # Whisper base's encoder: offline, the strongest audio features measured here (docs/FEATURES.md), and
        # free of openSMILE's research-only licence.
        DefaultExtractor(modality="audio", preset="whisper-base"),
        DefaultExtractor(modality="text", preset="minilm"),
    )

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        release, sessions = find_release(root)
        names, mapping = CLASSES[self.options.classes]
        rows = []
        n_evaluated = n_fallback = 0
        for session, folder in sessions.items():
            evaluation = folder / "dialog" / "EmoEvaluation"
            files = (
                sorted(p for p in evaluation.glob("*.txt") if p.is_file() and not p.name.startswith("."))
                if evaluation.is_dir()
                else []
            )
            if not files:
                raise DatasetError("no EmoEvaluation/*.txt files in this session", path=evaluation)
            videos = _listing(folder / "dialog" / "avi" / "DivX")
            dialog_wavs = _listing(folder / "dialog" / "wav")
            for path in files:
                utterances = parse_evaluation(path)
                n_evaluated += len(utterances)
                dialog = path.stem
                transcript = folder / "dialog" / "transcriptions" / f"{dialog}.txt"
                texts = parse_transcription(transcript) if transcript.is_file() else {}
                wav_folder = folder / "sentences" / "wav" / dialog
                wavs = _listing(wav_folder)
                kept = sorted(
                    (u for u in utterances if u["code"] in mapping),
                    key=lambda u: (u["start_s"], u["end_s"], u["utterance"]),
                )
                dialog_video = folder / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
                dialog_video = _real(dialog_video) if dialog_video.name in videos else None
                dialog_wav = folder / "dialog" / "wav" / f"{dialog}.wav"
                dialog_wav = _real(dialog_wav) if dialog_wav.name in dialog_wavs else None
                for position, u in enumerate(kept):
                    wav = f"{u['utterance']}.wav"
                    sentence_wav = _real(wav_folder / wav) if wav in wavs else None
                    if self.options.media == "dialog" and (dialog_wav or dialog_video):
                        media = {
                            "audio_path": dialog_wav or dialog_video,
                            "video_path": dialog_video,
                            "start_s": u["start_s"],
                            "end_s": u["end_s"],
                        }
                    else:  # media="sentence", or no dialogue media on disk: the utterance wav, whole
                        n_fallback += self.options.media == "dialog"
                        media = {
                            "audio_path": sentence_wav,
                            "video_path": None,
                            "start_s": None,
                            "end_s": None,
                        }
                    rows.append(
                        {
                            "sample_id": u["utterance"],
                            "dialogue_id": dialog,
                            "position": position,
                            "speaker": u["speaker"],
                            "split": "test" if session == TEST_SESSION else "train",
                            "fold": session - 1,
                            "label": mapping[u["code"]],
                            "text": texts.get(u["utterance"]),
                            **media,
                            "sentence_wav": sentence_wav,
                            "dialog_video": dialog_video,
                            "dialog_start_s": u["start_s"],
                            "dialog_end_s": u["end_s"],
                            "session": session,
                            "gender": u["gender"],
                            "dialog_type": "scripted" if "_script" in dialog else "improvised",
                            "emotion_code": u["code"],
                            "valence": u["valence"],
                            "arousal": u["arousal"],
                            "dominance": u["dominance"],
                        }
                    )
        if not rows:
            raise DatasetError(
                f"no utterance with a {self.options.classes}-class label among {n_evaluated} evaluated ones",
                path=release,
            )
        table = pd.DataFrame(rows)
        table["session"] = table["session"].astype("Int64")
        for column in ("sentence_wav", "dialog_video", "gender", "dialog_type", "emotion_code"):
            table[column] = table[column].astype("string")
        for column in ("dialog_start_s", "dialog_end_s", "valence", "arousal", "dominance"):
            table[column] = table[column].astype("Float64")
        table = table.sort_values(["session", "dialogue_id", "position"], kind="stable")
        notes = []
        if n_fallback:
            notes.append(
                f"{n_fallback} utterances have no dialogue wav or avi: their audio_path is the utterance wav "
                "(read whole, no segment, no video)"
            )
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=names, task="single_label"),
            protocols={
                "split": "standard ERC split: sessions 1-4 train, session 5 test (no valid; training "
                "carves one from train)",
                "fold": "leave-one-session-out: fold = session - 1 (0..4)",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
