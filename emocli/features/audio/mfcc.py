"""MFCC sequences with librosa, including CFN-SR's fixed-length recipe.

CFN-SR (ravdess.py and dataset_prep.py of github.com/skeletonNN/CFN-SR at commit 2443494) reads RAVDESS
with `librosa.load(offset=0.5, duration=2.45, sr=44100)` and takes `librosa.feature.mfcc(n_mfcc=13)` with
librosa's defaults: sample_rate=44100, offset_s=0.5,
duration_s=2.45 and pad_to_duration=True give the same [212, 13] for every clip. The segment is cut at
the file's own rate and then resampled with soxr, as librosa.load does.

Every clip is read as mono (the mean of its channels) at `sample_rate` (16 kHz unless set), whatever rate
and channels it was stored with: n_fft and hop_length count samples, so MFCCs of one recording stored at
8 kHz stereo and at 96 kHz would otherwise differ in frame count (620 frames against 104 for 3.3 s)
and in what each coefficient describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from emocli.core.types import Features
from emocli.features.audio.io import (
    AUDIO_IO_LIBRARIES,
    audio_input_fingerprint,
    read_sample_audio,
    sample_segment,
)
from emocli.features.base import Extractor, ExtractorParams


class MfccParams(ExtractorParams):
    n_mfcc: int = Field(13, gt=0)
    sample_rate: int = Field(16000, gt=0, description="every clip is resampled to this rate (and mixed down to mono)")
    offset_s: float = Field(0.0, ge=0, description="skip this much of the sample's audio first")
    duration_s: float | None = Field(None, gt=0, description="read at most this much; None: to the end")
    n_fft: int = Field(2048, gt=0)
    hop_length: int = Field(512, gt=0)
    pad_to_duration: bool = Field(
        False, description="zero-pad (or trim rounding excess) to exactly duration_s, so every clip has one T"
    )

    @field_validator("sample_rate", mode="before")
    @classmethod
    def _a_rate_is_declared(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "give a rate (e.g. 16000): at each file's own rate, files stored at other rates give MFCCs "
                "of other lengths and meanings"
            )
        return value

    @model_validator(mode="after")
    def _padding_needs_duration(self) -> MfccParams:
        if self.pad_to_duration and self.duration_s is None:
            raise ValueError("pad_to_duration needs duration_s")
        return self


class MfccExtractor(Extractor):
    """MFCCs [T, n_mfcc] of a sample's audio, mixed down to mono and resampled to `sample_rate`.

    Frame t is centred at offset_s + t * hop_length / rate seconds from the start of the sample's
    segment (librosa's centred frames).
    """

    name = "mfcc"
    modality = "audio"
    kind = "sequence"
    Params = MfccParams
    libraries: ClassVar[tuple[str, ...]] = ("librosa", "scipy", *AUDIO_IO_LIBRARIES)
    params: MfccParams

    @property
    def dim(self) -> int:
        return self.params.n_mfcc

    def feature_names(self) -> list[str]:
        return [f"mfcc{i}" for i in range(self.params.n_mfcc)]

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return audio_input_fingerprint(sample)

    def extract(self, sample: Mapping[str, Any]) -> Features:
        import librosa

        p = self.params
        segment_start, segment_end = sample_segment(sample)
        start_s = (segment_start or 0.0) + p.offset_s
        end_s = start_s + p.duration_s if p.duration_s is not None else None
        if segment_end is not None:
            end_s = segment_end if end_s is None else min(end_s, segment_end)
        signal, rate = read_sample_audio(sample, sample_rate=p.sample_rate, start_s=start_s, end_s=end_s)
        if p.pad_to_duration:
            length = round(p.duration_s * rate)
            signal = np.pad(signal[:length], (0, max(length - len(signal), 0)))

        mfcc = librosa.feature.mfcc(
            y=signal, sr=rate, n_mfcc=p.n_mfcc, n_fft=p.n_fft, hop_length=p.hop_length
        )
        frames = np.arange(mfcc.shape[1])
        times = p.offset_s + librosa.frames_to_time(frames, sr=rate, hop_length=p.hop_length)
        return Features(mfcc.T, times=times)
