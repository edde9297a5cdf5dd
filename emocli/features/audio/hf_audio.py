"""Hidden states of a Hugging Face speech encoder with a convolutional front end over the waveform:
wav2vec 2.0, HuBERT, WavLM, data2vec-audio, UniSpeech(-SAT), SEW, and checkpoints built on them (e.g.
emotion-fine-tuned wav2vec2 models), by hub id or local folder, through `AutoFeatureExtractor` +
`AutoModel`.

Usual hub ids: facebook/wav2vec2-base, facebook/wav2vec2-large-lv60, facebook/hubert-base-ls960,
facebook/hubert-large-ll60k, microsoft/wavlm-base-plus, microsoft/wavlm-large,
facebook/data2vec-audio-base. Whisper has its own extractor (`whisper`), whose encoder reads log-mel
input and has no such front end.

The convolutional front end gives one frame per product of its strides (320 samples, 20 ms at 16 kHz,
for all of the above); frame i is timed at the centre of its receptive field (400 samples for those).
Segments longer than `chunk_s` are encoded in equal chunks (encoders.py): self-attention over a long
recording would otherwise need memory quadratic in its length.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError
from emocli.features.audio.encoders import (
    SpeechEncoderExtractor,
    SpeechEncoderParams,
    check_layer,
    select_layer,
    torch_device,
)
from emocli.features.audio.io import AUDIO_IO_LIBRARIES
from emocli.features.checkpoints import (
    NO_REMOTE_CODE,
    check_config,
    checkpoint_identity,
    load_failure,
    resolve_checkpoint,
)


class HfAudioParams(SpeechEncoderParams):
    model: str = Field(
        "facebook/wav2vec2-base", description="hub id (microsoft/wavlm-base-plus, ...) or local model folder"
    )
    chunk_s: float = Field(30.0, gt=0, description="longer segments are encoded in chunks of at most this long")


class HfAudioExtractor(SpeechEncoderExtractor):
    """Hidden states of a wav2vec2-style speech encoder: a vector, or one frame per front-end stride."""

    name = "hf-audio"
    Params = HfAudioParams
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "torch", *AUDIO_IO_LIBRARIES)
    params: HfAudioParams

    def __init__(self, params: HfAudioParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self._location, self._local = resolve_checkpoint(self.params.model, "speech model")
        self._config = None
        self._processor = None
        self._model = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None, "_processor": None, "_model": None}

    def _load(self, from_pretrained, **kwargs: Any):
        try:
            # Never the model's own code, and never a question at the terminal about it (checkpoints.py).
            return from_pretrained(self._location, revision=self.params.revision, **NO_REMOTE_CODE, **kwargs)
        except (OSError, ValueError) as error:
            raise load_failure(error, self.params.model, self._location, self._local, "speech model") from error

    @property
    def config(self):  # -> transformers.PretrainedConfig
        if self._config is None:
            from transformers import AutoConfig

            config = check_config(self._load(AutoConfig.from_pretrained), self.params.model, self._location)
            if not (getattr(config, "conv_kernel", None) and getattr(config, "conv_stride", None)):
                raise ConfigError(
                    f"{self.params.model} ({config.model_type}) has no convolutional front end over the waveform "
                    "(conv_kernel, conv_stride): hf-audio reads wav2vec2, HuBERT, WavLM, data2vec-audio and "
                    "similar encoders; use the whisper extractor for Whisper"
                )
            check_layer(self.params.layer, config.num_hidden_layers + 1, self.params.model)
            self._config = config
        return self._config

    @property
    def processor(self):  # -> transformers feature extractor (normalisation, rate)
        if self._processor is None:
            from transformers import AutoFeatureExtractor

            self._processor = self._load(AutoFeatureExtractor.from_pretrained)
        return self._processor

    @property
    def model(self):  # -> transformers.PreTrainedModel
        if self._model is None:
            import torch
            from transformers import AutoModel

            _ = self.config  # checks the architecture and the layer first
            # safetensors only: a downloaded pickle is never loaded.
            model = self._load(AutoModel.from_pretrained, dtype=torch.float32, use_safetensors=True)
            self._model = model.to(torch_device(self.params.device)).eval()
        return self._model

    def model_identity(self) -> dict[str, Any]:
        return checkpoint_identity(self._location, self._local, self.params.revision)

    # -- Extractor interface -----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "model_identity": self.model_identity()}

    @property
    def sample_rate(self) -> int:
        return int(self.processor.sampling_rate)

    @property
    def frame_samples(self) -> int:
        return math.prod(self.config.conv_stride)

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees through the convolutions."""
        field, jump = 1, 1
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    @property
    def min_samples(self) -> int:
        return self.receptive_field

    @property
    def window_samples(self) -> int:
        frames = max(1, int(self.params.chunk_s * self.sample_rate) // self.frame_samples)
        return frames * self.frame_samples

    def frame_times(self, n_frames: int) -> np.ndarray:
        centres = np.arange(n_frames) * self.frame_samples + (self.receptive_field - 1) / 2
        return centres / self.sample_rate

    def encode(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        model = self.model
        inputs = self.processor(chunks, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            outputs = model(inputs["input_values"].to(model.device), output_hidden_states=True)
            hidden = select_layer(outputs.hidden_states, self.params.layer)
        return list(hidden.float().cpu().numpy())
