"""Whisper encoder features: hidden states of OpenAI's Whisper (Radford et al. 2022, "Robust Speech
Recognition via Large-Scale Weak Supervision"; https://github.com/openai/whisper) through transformers.

`model` is "whisper-base" or "whisper-tiny.en" (the offline packages, see whisper_weights.py), a hub id
("openai/whisper-base", "openai/whisper-small", ...) or a local transformers Whisper folder.

The input is Whisper's 80-bin (128 for large-v3) log-mel spectrogram from transformers'
`WhisperFeatureExtractor` (10-ms hop); the encoder's two convolutions halve it to one frame per 20 ms,
frame i centred at 0.02 * i s. Whisper was trained on 30-s windows (3000 mel frames, 1500 positions).
`window = "padded"` feeds every chunk zero-padded to 30 s as in training and keeps the frames of the
audio itself; `window = "cut"` feeds the audio's own frames only, with the position table sliced to
them: about 10x cheaper on RAVDESS's 3.7-s clips (benchmarks/extract_whisper.py), but outside what
Whisper saw in training, so the two give different features. Segments over 30 s are
encoded in equal chunks of at most 30 s (encoders.py). Only the encoder is kept in memory.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError
from emocli.features.audio.encoders import (
    SpeechEncoderExtractor,
    SpeechEncoderParams,
    check_layer,
    torch_device,
)
from emocli.features.audio.io import AUDIO_IO_LIBRARIES
from emocli.features.audio.whisper_weights import converted_whisper_dir, offline_whisper
from emocli.features.checkpoints import checkpoint_identity, load_failure, resolve_checkpoint

WHISPER_RATE = 16000
HOP_SAMPLES = 160  # the log-mel hop: 10 ms
FRAME_SAMPLES = 2 * HOP_SAMPLES  # conv2 has stride 2: one encoder frame per 20 ms
N_FFT = 400  # the log-mel analysis window: 25 ms, the shortest input


class WhisperParams(SpeechEncoderParams):
    model: str = Field(
        "whisper-base",
        description="'whisper-base' or 'whisper-tiny.en' (offline packages), a hub id (openai/whisper-small) "
        "or a local transformers Whisper folder",
    )
    window: Literal["cut", "padded"] = Field(
        "cut", description="cut: the segment's own frames (position table sliced); padded: zero-padded to 30 s"
    )


class WhisperExtractor(SpeechEncoderExtractor):
    """Whisper encoder hidden states of a sample's audio: a vector, or frames every 20 ms."""

    name = "whisper"
    Params = WhisperParams
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "torch", *AUDIO_IO_LIBRARIES)
    params: WhisperParams

    def __init__(self, params: WhisperParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self._offline = offline_whisper(self.params.model)
        if self._offline is None:
            self._location, self._local = resolve_checkpoint(self.params.model, "Whisper model")
        else:
            if self.params.revision is not None:
                raise ConfigError(f"revision applies to hub ids, not to the offline model {self.params.model!r}")
            check_layer(self.params.layer, self._offline.blocks + 1, self._offline.name)
        self._config = None
        self._encoder = None
        self._mel = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None, "_encoder": None, "_mel": None}

    # -- model -------------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The transformers folder or hub id loaded (an offline package is converted on first use)."""
        if self._offline is not None:
            return str(converted_whisper_dir(self._offline.name))
        return self._location

    @property
    def config(self):  # -> transformers.WhisperConfig
        if self._config is None:
            from transformers import WhisperConfig

            try:
                config = WhisperConfig.from_pretrained(self.location, revision=self.params.revision)
            except (OSError, ValueError) as error:
                raise self._load_failure(error) from error
            check_layer(self.params.layer, config.encoder_layers + 1, self.params.model)
            self._config = config
        return self._config

    @property
    def encoder(self):  # -> transformers WhisperEncoder
        if self._encoder is None:
            import torch
            from transformers import WhisperModel

            config = self.config
            try:
                # safetensors only: a downloaded pickle is never loaded.
                model = WhisperModel.from_pretrained(
                    self.location, revision=self.params.revision, dtype=torch.float32, use_safetensors=True
                )
            except (OSError, ValueError) as error:
                raise self._load_failure(error) from error
            self._encoder = model.get_encoder().to(torch_device(self.params.device)).eval()
            del model  # the decoder goes with it
            if config.num_mel_bins != self._encoder.conv1.in_channels:
                raise ConfigError(f"{self.params.model}: config and weights disagree on the mel bins")
        return self._encoder

    @property
    def mel(self):  # -> transformers.WhisperFeatureExtractor
        if self._mel is None:
            from transformers import WhisperFeatureExtractor

            self._mel = WhisperFeatureExtractor(feature_size=self.config.num_mel_bins, sampling_rate=WHISPER_RATE)
        return self._mel

    def _load_failure(self, error: Exception) -> ConfigError:
        local = self._offline is not None or self._local
        return load_failure(error, self.params.model, self.location, local, "Whisper model")

    def model_identity(self) -> dict[str, Any]:
        if self._offline is not None:  # the hash is checked at every load: it names the weights
            return {"offline": self._offline.name, "model_bin_sha256": self._offline.sha256}
        return checkpoint_identity(self._location, self._local, self.params.revision)

    # -- Extractor interface -----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        if self._offline is not None:
            return self._offline.width
        return self.config.d_model

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "model_identity": self.model_identity()}

    @property
    def sample_rate(self) -> int:
        return WHISPER_RATE

    @property
    def window_samples(self) -> int:
        return self.mel.n_samples  # 30 s

    @property
    def frame_samples(self) -> int:
        return FRAME_SAMPLES

    @property
    def min_samples(self) -> int:
        return N_FFT

    def frame_times(self, n_frames: int) -> np.ndarray:
        return np.arange(n_frames) * (FRAME_SAMPLES / WHISPER_RATE)

    def batch_key(self, n_samples: int) -> int:
        return 0 if self.params.window == "padded" else n_samples  # padded: every chunk is 30 s to the encoder

    def encode(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        padded = self.params.window == "padded"
        mel = self.mel(
            chunks, sampling_rate=WHISPER_RATE, return_tensors="np",
            padding="max_length" if padded else "longest", truncation=False,
        ).input_features
        encoder = self.encoder
        with torch.inference_mode():
            hidden = encoder_hidden_state(encoder, torch.from_numpy(mel).to(encoder.conv1.weight.device), self.params.layer)
        hidden = hidden.float().cpu().numpy()
        # each chunk's own frames: one per 2 log-mel frames of its samples, whatever the window
        return [values[: (len(chunk) // HOP_SAMPLES + 1) // 2] for values, chunk in zip(hidden, chunks)]


def encoder_hidden_state(encoder, mel, layer: int | str):  # (WhisperEncoder, Tensor[B, mels, 2T]) -> Tensor[B, T, D]
    """One hidden state (or the mean of all) of transformers' WhisperEncoder for mel input of any length
    up to 30 s.

    transformers' `WhisperEncoder.forward` insists on 3000 mel frames, so this runs its modules in the
    same order (convolutions with GELU, positions added, the blocks, the final layer norm on the last
    state, as its `hidden_states` are defined), adding only the first T positions; it stops after the
    block that gives the requested state. A test checks it against `forward` on 30-s input.
    """
    from torch.nn.functional import gelu

    blocks = len(encoder.layers)
    stop = blocks if layer == "mean" else layer % (blocks + 1)
    hidden = gelu(encoder.conv2(gelu(encoder.conv1(mel)))).transpose(1, 2)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    total = hidden if layer == "mean" else None
    for index, block in enumerate(encoder.layers[:stop], start=1):
        hidden = block(hidden, None)
        if index == blocks:
            hidden = encoder.layer_norm(hidden)
        if total is not None:
            total = total + hidden
    return hidden if total is None else total / (blocks + 1)
