"""What the pretrained speech encoders (Whisper, and wav2vec2-style models through `hf-audio`) share.

A sample's audio is read by `load_audio` at the model's sample rate (soxr resampling, channels averaged).
A segment longer than the model's window is split into equal chunks no longer than the window, on the
encoder's frame grid; each chunk is encoded alone and the frames are joined, with their times counted
from the start of the segment. Only chunks the model sees alike are batched together (of equal length, or
all of them when the model pads every input to one window): padding would change what the encoder sees,
so `batch_size` speeds up padded or fixed-length inputs and changes no value.

Which hidden state: `layer` indexes the encoder's hidden states as transformers returns them (0 = the
input embeddings before the first block, 1..L = after each block, -1 = the last), or "mean" averages all
L + 1 of them. `output = "mean"` averages the segment's own frames into one vector; "sequence" keeps the
frames [T, D] with their times.

Flags: "cropped" when the segment was longer than `max_duration_s` and only its beginning was encoded;
"no_speech" from a cheap energy test (`is_silent`), not from a model.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.types import FeatureKind, Features
from emocli.features.audio.io import audio_input_fingerprint, read_sample_audio, sample_audio_path, sample_segment
from emocli.features.base import Extractor, ExtractorParams

# The energy test: 25-ms frames every 10 ms; a frame is active when its RMS level reaches both the
# absolute floor (`no_speech_dbfs`) and RELATIVE_DB above the segment's quiet level (its 10th percentile
# frame), so that steady noise of any level is not taken for speech. Under MIN_ACTIVE_S active: no speech.
ENERGY_FRAME_S, ENERGY_HOP_S = 0.025, 0.010
RELATIVE_DB = 10.0
MIN_ACTIVE_S = 0.1


class SpeechEncoderParams(ExtractorParams):
    revision: str | None = Field(None, description="hub branch, tag or commit to pin (hub ids only)")
    layer: int | Literal["mean"] = Field(
        -1, description="hidden-state index (0 = input embeddings, -1 = last layer) or 'mean' of all of them"
    )
    output: Literal["mean", "sequence"] = Field(
        "mean", description="mean: one vector, the average of the segment's frames; sequence: frames [T, D]"
    )
    max_duration_s: float | None = Field(
        None, gt=0, description="encode at most this much of each segment (longer ones are flagged cropped)"
    )
    no_speech_dbfs: float = Field(
        -60.0, le=0, description="energy test: frames below this RMS level (dB re full scale) are silence"
    )
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(
        1, gt=0, description="1: one sample at a time in worker processes (CPU); more: batches in the main process"
    )


def is_silent(signal: np.ndarray, rate: int, floor_dbfs: float) -> bool:
    """The energy test: fewer than MIN_ACTIVE_S seconds of frames that are loud enough to be speech."""
    frame, hop = round(ENERGY_FRAME_S * rate), round(ENERGY_HOP_S * rate)
    if len(signal) < frame:
        signal = np.pad(signal, (0, frame - len(signal)))
    frames = np.lib.stride_tricks.sliding_window_view(signal, frame)[::hop].astype(np.float64)
    levels = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    threshold = max(floor_dbfs, float(np.percentile(levels, 10)) + RELATIVE_DB)
    return np.count_nonzero(levels >= threshold) * hop / rate < MIN_ACTIVE_S


def chunk_bounds(n_samples: int, max_samples: int, grid: int) -> list[tuple[int, int]]:
    """[start, stop) of equal chunks covering n_samples, each at most max_samples and starting on the grid.

    Equal chunks rather than full windows and a remainder: 31 s become two chunks of 15.5 s, never a
    30-s chunk and a 1-s one that sees almost no context.
    """
    count = _ceil_div(n_samples, max_samples)
    length = min(_ceil_div(_ceil_div(n_samples, count), grid) * grid, max_samples)
    return [(start, min(start + length, n_samples)) for start in range(0, n_samples, length)]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def select_layer(hidden_states: Sequence[Any], layer: int | str):  # torch tensors -> torch tensor
    """The configured hidden state (or the mean of all) of a transformers `hidden_states` tuple."""
    import torch

    if layer == "mean":
        return torch.stack(tuple(hidden_states)).mean(dim=0)
    return hidden_states[layer]


def check_layer(layer: int | str, n_states: int, model: str) -> None:
    if layer != "mean" and not -n_states <= layer < n_states:
        raise ConfigError(
            f"layer {layer} out of range: {model} has hidden states 0..{n_states - 1} (or -1..-{n_states}), "
            "or 'mean'"
        )


def torch_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available")
    return choice


class SpeechEncoderExtractor(Extractor):
    """Frames of a pretrained speech encoder, pooled or as a sequence; subclasses load and run the model."""

    modality = "audio"
    execution_params: ClassVar[frozenset[str]] = frozenset({"device", "batch_size"})
    params: SpeechEncoderParams

    def __init__(self, params: ExtractorParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.batch_size = self.params.batch_size  # type: ignore[misc]  # the runner batches by it

    @property
    def kind(self) -> FeatureKind:  # type: ignore[override]
        return "vector" if self.params.output == "mean" else "sequence"

    # -- what a model defines --------------------------------------------------------------------

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """The rate the model's input is resampled to."""

    @property
    @abstractmethod
    def window_samples(self) -> int:
        """The longest chunk encoded at once."""

    @property
    @abstractmethod
    def frame_samples(self) -> int:
        """Samples per encoder frame: chunks start on this grid, so frame times stay on one grid."""

    @abstractmethod
    def encode(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Encode chunks of one `batch_key` into the configured hidden state, frames [T, D] each."""

    def batch_key(self, n_samples: int) -> int:
        """Chunks with equal keys are encoded as one batch: by default those of equal length."""
        return n_samples

    @abstractmethod
    def frame_times(self, n_frames: int) -> np.ndarray:
        """Times (s) of a chunk's frames from the chunk's start: each frame's receptive-field centre."""

    # -- Extractor interface ---------------------------------------------------------------------

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return audio_input_fingerprint(sample)

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        signals, flags = zip(*(self._read(sample) for sample in samples))
        chunks = [
            (index, start, signal[start:stop])
            for index, signal in enumerate(signals)
            for start, stop in chunk_bounds(len(signal), self.window_samples, self.frame_samples)
        ]
        frames: dict[tuple[int, int], np.ndarray] = {}
        for key in sorted({self.batch_key(len(chunk)) for _, _, chunk in chunks}):
            same = [(index, start, chunk) for index, start, chunk in chunks if self.batch_key(len(chunk)) == key]
            for first in range(0, len(same), self.params.batch_size):
                batch = same[first : first + self.params.batch_size]
                encoded = self.encode([chunk for _, _, chunk in batch])
                frames.update({(index, start): values for (index, start, _), values in zip(batch, encoded)})
        results = []
        for index, sample_flags in enumerate(flags):
            parts = sorted(((start, v) for (i, start), v in frames.items() if i == index), key=lambda part: part[0])
            values = np.concatenate([v for _, v in parts])
            if self.params.output == "mean":
                results.append(Features(values.mean(axis=0), flags=sample_flags))
                continue
            times = np.concatenate([start / self.sample_rate + self.frame_times(len(v)) for start, v in parts])
            results.append(Features(values, times=times, flags=sample_flags))
        return results

    def _read(self, sample: Mapping[str, Any]) -> tuple[np.ndarray, tuple[str, ...]]:
        """The sample's audio at the model's rate, cut to max_duration_s, and its flags."""
        path = sample_audio_path(sample)
        start_s, end_s = sample_segment(sample)
        flags: list[str] = []
        limit = self.params.max_duration_s
        if limit is not None:
            stop = (start_s or 0.0) + limit
            if end_s is None or end_s > stop:
                end_s = stop
                flags.append("cropped")  # withdrawn below when the file ends before the limit anyway
        signal, _ = read_sample_audio(sample, sample_rate=self.sample_rate, start_s=start_s, end_s=end_s)
        if "cropped" in flags and len(signal) < round(limit * self.sample_rate):
            flags.remove("cropped")
        if len(signal) < self.min_samples:
            raise ExtractionError(
                f"{len(signal) / self.sample_rate:.3f} s of audio is too short for {self.name} "
                f"(at least {self.min_samples / self.sample_rate:.3f} s)", path=path
            )
        if is_silent(signal, self.sample_rate, self.params.no_speech_dbfs):
            flags.append("no_speech")
        return signal, tuple(flags)

    @property
    def min_samples(self) -> int:
        """The shortest input the model can encode (one analysis window)."""
        return self.frame_samples
