"""Whisper encoder features: hidden states of OpenAI's Whisper (Radford et al. 2022, "Robust Speech
Recognition via Large-Scale Weak Supervision"; https://github.com/openai/whisper), computed by CTranslate2
(`backend = "ct2"`) or transformers (`backend = "torch"`).

`model` is "whisper-base" or "whisper-tiny.en" (the offline packages, see whisper_weights.py), a hub id
("openai/whisper-base", "openai/whisper-small", ...) or a local transformers Whisper folder. The ct2 backend
runs the offline packages' CTranslate2 weights as they are (float32, or int8-quantised weights with
`compute_type = "int8"`); it returns one hidden state per frame, normalised per frame for an intermediate
layer (`frame_norm`, see whisper_weights.cut_encoder), and not the mean of layers. The torch backend reads
any transformers checkpoint and every layer choice; with the same settings the two give the same features
within float rounding (float32) or the quantisation (int8): docs/FEATURES.md gives the measured cosines and
downstream accuracies.

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
from pydantic import Field, model_validator

from emocli.core.errors import ConfigError
from emocli.features.audio.encoders import (
    SpeechEncoderExtractor,
    SpeechEncoderParams,
    check_layer,
    torch_device,
)
from emocli.features.audio.io import AUDIO_IO_LIBRARIES
from emocli.features.audio.whisper_weights import converted_whisper_dir, ctranslate2_whisper, offline_whisper
from emocli.features.base import package_versions
from emocli.features.checkpoints import checkpoint_identity, load_failure, resolve_checkpoint

WHISPER_RATE = 16000
HOP_SAMPLES = 160  # the log-mel hop: 10 ms
FRAME_SAMPLES = 2 * HOP_SAMPLES  # conv2 has stride 2: one encoder frame per 20 ms
N_FFT = 400  # the log-mel analysis window: 25 ms, the shortest input
WINDOW_SAMPLES = 30 * WHISPER_RATE  # Whisper's window: 3000 log-mel frames


class WhisperParams(SpeechEncoderParams):
    model: str = Field(
        "whisper-base",
        description="'whisper-base' or 'whisper-tiny.en' (offline packages), a hub id (openai/whisper-small) "
        "or a local transformers Whisper folder",
    )
    window: Literal["cut", "padded"] = Field(
        "cut", description="cut: the segment's own frames (position table sliced); padded: zero-padded to 30 s"
    )
    backend: Literal["torch", "ct2"] = Field(
        "torch", description="torch: transformers (any checkpoint, any layer); ct2: CTranslate2 (the offline "
        "packages; one layer, per-frame normalised when intermediate)"
    )
    compute_type: Literal["float32", "int8"] = Field(
        "float32", description="ct2 only: float32, or int8-quantised weights (faster, features within the quantisation)"
    )
    frame_norm: bool = Field(
        False, description="normalise each frame of an intermediate layer (layer norm without scale and shift), "
        "as Whisper's last layer is; the ct2 backend's intermediate layers are"
    )

    @model_validator(mode="after")
    def _backend_choices(self) -> WhisperParams:
        if self.frame_norm and self.layer == "mean":
            raise ValueError("frame_norm applies to one layer, not to the mean of layers")
        if self.backend == "torch" and self.compute_type != "float32":
            raise ValueError("compute_type int8 is the ct2 backend's; the torch backend computes in float32")
        if self.backend == "ct2":
            if self.layer == "mean":
                raise ValueError("the ct2 backend gives one layer, not the mean of layers: use backend=torch")
            if self.window != "cut":
                raise ValueError("the ct2 backend encodes the segment's own frames (window=cut)")
        return self


class WhisperExtractor(SpeechEncoderExtractor):
    """Whisper encoder hidden states of a sample's audio: a vector, or frames every 20 ms."""

    name = "whisper"
    Params = WhisperParams
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "torch", *AUDIO_IO_LIBRARIES)
    # Left out of a feature set's identity at their defaults: stores made before them keep their names.
    later_params: ClassVar[frozenset[str]] = frozenset({"backend", "compute_type", "frame_norm"})
    params: WhisperParams

    def __init__(self, params: WhisperParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self._offline = offline_whisper(self.params.model)
        if self._offline is None:
            if self.params.backend == "ct2":
                raise ConfigError(f"backend ct2 runs the offline models ({', '.join(('whisper-base', 'whisper-tiny.en'))}); "
                                  f"for {self.params.model!r} use backend=torch")
            self._location, self._local = resolve_checkpoint(self.params.model, "Whisper model")
        else:
            if self.params.revision is not None:
                raise ConfigError(f"revision applies to hub ids, not to the offline model {self.params.model!r}")
            check_layer(self.params.layer, self._offline.blocks + 1, self._offline.name)
            self._check_ct2_layer(self._offline.blocks)
        self._config = None
        self._encoder = None
        self._mel = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None, "_encoder": None, "_mel": None}

    def _check_ct2_layer(self, blocks: int) -> None:
        """CTranslate2 gives the last state, or an intermediate one normalised per frame (never the raw one)."""
        if self.params.backend != "ct2":
            return
        last = self.params.layer % (blocks + 1) == blocks
        if self.params.layer % (blocks + 1) == 0:
            raise ConfigError("the ct2 backend encodes at least one block: layer 0 (the input embeddings) needs backend=torch")
        if not last and not self.params.frame_norm:
            raise ConfigError(f"the ct2 backend gives intermediate layers normalised per frame: set frame_norm=true "
                              f"for layer {self.params.layer}, or use backend=torch")
        if last and self.params.frame_norm:
            raise ConfigError("frame_norm applies to intermediate layers: the last layer is normalised already")

    def versions(self) -> dict[str, str]:
        if self.params.backend == "ct2":
            return package_versions("ctranslate2", "faster-whisper", *AUDIO_IO_LIBRARIES)
        return super().versions()

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

    @property
    def ct2_encoder(self):  # -> ctranslate2.models.Whisper
        """The offline model in CTranslate2, its encoder cut after the requested layer (whole for the last)."""
        blocks = self._offline.blocks
        layer = self.params.layer % (blocks + 1)
        cut = None if layer == blocks else layer
        return ctranslate2_whisper(self._offline.name, cut, self.params.compute_type, ct2_device(self.params.device))

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
        return WINDOW_SAMPLES

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
        if self.params.backend == "ct2":
            return self._encode_ct2(chunks)
        import torch

        padded = self.params.window == "padded"
        mel = self.mel(
            chunks, sampling_rate=WHISPER_RATE, return_tensors="np",
            padding="max_length" if padded else "longest", truncation=False,
        ).input_features
        encoder = self.encoder
        with torch.inference_mode():
            hidden = encoder_hidden_state(encoder, torch.from_numpy(mel).to(encoder.conv1.weight.device), self.params.layer)
            if self.params.frame_norm:
                hidden = torch.nn.functional.layer_norm(hidden, hidden.shape[-1:], eps=LAYER_NORM_EPS)
        hidden = hidden.float().cpu().numpy()
        # each chunk's own frames: one per 2 log-mel frames of its samples, whatever the window
        return [values[: (len(chunk) // HOP_SAMPLES + 1) // 2] for values, chunk in zip(hidden, chunks)]


    def _encode_ct2(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Chunks of one length through CTranslate2's encoder; the log-mel input from faster-whisper's
        feature extractor (numpy), which matches transformers' to 2e-5 and spares a cold start the import."""
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        if self._mel is None:
            self._mel = FeatureExtractor(feature_size=self._offline.mels, sampling_rate=WHISPER_RATE)
        mel = np.stack([self._mel(chunk, padding=0) for chunk in chunks]).astype(np.float32)
        frames = (len(chunks[0]) // HOP_SAMPLES + 1) // 2
        # The log-mel of a cut input has an odd frame at the end that the encoder's stride-2 conv drops anyway.
        hidden = np.asarray(self.ct2_encoder.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)),
                                                    to_cpu=True))
        return [values[:frames] for values in hidden]


LAYER_NORM_EPS = 1e-5  # Whisper's (and CTranslate2's) layer norm epsilon


def ct2_device(choice: str) -> str:
    """CTranslate2's device for a device setting, without importing torch (a cold start pays for it)."""
    if choice != "auto":
        return choice
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


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
