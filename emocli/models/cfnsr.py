"""CFN-SR: cross-modal fusion network with self-attention and residual structure (Fu et al., arXiv 2111.02172).
Released code: github.com/skeletonNN/CFN-SR (commit 2443494), built on MSAF
(github.com/anita-hu/MSAF, commit 125e0f1).

Streams, for the modalities "audio" and "visual" (either alone, or both):
  visual  raw clips [B, 3, T, H, W] -> 3D ResNeXt-50 -> map V [B, 2048, S, H', W'] ([2048, 2, 7, 7] for 30x224x224);
          or precomputed features [B, T, D] / [B, D] -> ReLU(Linear(D -> video_dim)) per frame, laid out as ONE
          temporal slice whose positions are the frames, so the block below attends over frames.
  audio   MFCCs (or any features) [B, T, D] -> MFCCNet, a 1D CNN with D input channels -> A [B, 64, T'] (T' = 26
          for [13, 212]) -> flatten (the reference, fixed length) or a masked mean over time -> Dropout(0.4).
Cross-modal block (both modalities): a MulT encoder over A (causal), its last real step -> Linear(64, 64, no
bias) = y; per position of V: Linear(C -> 64)(v) + y -> tanh -> Linear(64 -> 1) -> softmax over the positions
of each temporal slice = α; V <- V ⊙ α + V. Head: Linear([pooled V, audio summary] -> C).
"""

from __future__ import annotations

from string import Formatter

import torch
from pydantic import model_validator
from torch import nn

from emocli.core.errors import ConfigError
from emocli.models.base import EmotionModel, ModalitySpec, ModelConfig, ModelOutput, checks_values
from emocli.models.blocks.attention import MulTEncoder, sequence_input
from emocli.models.blocks.resnext3d import ResNeXt3D, load_weights
from emocli.models.objectives import ClassificationObjective
from emocli.models.registry import register_model

AUDIO_CHANNELS = 64  # MFCCNet's output width d_f, also the cross-modal transformer's width


class CFNSRConfig(ModelConfig):
    # Audio summary. None: masked mean of MFCCNet's output over time (any length). N: the reference's flatten
    # of [64, T'] for inputs zero-padded to N frames (212 -> T' = 26 -> 1664 features); longer inputs are an error.
    audio_frames: int | None = None
    audio_dropout: float = 0.4  # on the audio summary (the reference's audio block 1)
    # Cross-modal block, built when both modalities are configured. False: plain concatenation (the released
    # ablation networks/msaf_ravdess_ab_1.py; 25,916,072 parameters).
    cross_modal: bool = True
    residual: bool = True  # False: V <- V ⊙ α (networks/msaf_ravdess_ab_2.py; the same parameter count)
    transformer_layers: int = 5
    transformer_heads: int = 8
    embed_dropout: float = 0.3
    transformer_dropout: float = 0.1  # MulT's attention, ReLU and residual dropouts (all 0.1)
    # The released code sums the attention maps over the batch and applies that one map to every sample, so a
    # prediction depends on its batch; the paper applies each sample's own map. None: faithful.
    batch_summed_attention: bool | None = None
    # The fused network drops the ReLU after the video stem's bn1. None: dropped when faithful.
    stem_relu: bool | None = None
    video_dim: int = 2048  # the video map's channels; for feature inputs the width they are projected to
    # The ResNeXt-3D of raw clips (the paper's ResNeXt-50: blocks (3, 4, 6, 3), width 128, cardinality 32); its
    # map has 16 x video_width channels, which video_dim must match. Smaller ones train on a CPU.
    video_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    video_width: int = 128
    video_cardinality: int = 32
    # Unimodal backbones to start from (the paper fine-tunes MSAF's per-fold ResNeXt-3D and MFCCNet): local
    # state-dict files (.safetensors, or tensor-only torch files such as MSAF's .pth); their classifiers
    # (`fc.*`, `fc1.*`) are ignored. A path may name the fold: "{fold}" is the run's fold index (0-based, as in
    # fold=K), "{fold_number}" the same plus one (MSAF's and CFN-SR's file names). `resolve_weights` fills it.
    video_weights: str | None = None
    audio_weights: str | None = None
    # One file for every fold is refused (see `resolve_weights`) unless this says it never saw a test actor.
    weights_exclude_test_actors: bool = False
    # Activation checkpointing of the ResNeXt-3D in training: each block's activations are recomputed in the
    # backward pass instead of kept (the same gradients and BatchNorm statistics; benchmarks/memory.py).
    video_checkpointing: bool = True

    @model_validator(mode="after")
    def _check(self) -> CFNSRConfig:
        unknown = set(self.modalities) - {"audio", "visual"}
        if unknown or not self.modalities:
            raise ValueError(f"CFN-SR takes 'audio' and/or 'visual', not {sorted(unknown) or 'nothing'}")
        audio, visual = self.modalities.get("audio"), self.modalities.get("visual")
        if audio is not None and audio.kind == "clip":
            raise ValueError("audio must be a sequence or a vector")
        if visual is not None and visual.kind == "clip" and (visual.dim != 3 or self.video_dim != 16 * self.video_width):
            raise ValueError(f"raw clips have 3 channels and the ResNeXt-3D gives a {16 * self.video_width}-channel "
                             f"map (16 x video_width): use dim 3 and video_dim {16 * self.video_width}")
        if self.audio_frames is not None and self.audio_frames < MFCCNet.MIN_FRAMES:
            raise ValueError(f"audio_frames must be at least {MFCCNet.MIN_FRAMES}")
        if self.video_weights is not None and (visual is None or visual.kind != "clip"):
            raise ValueError("video_weights initialise the ResNeXt-3D of raw clips: the visual input must be a clip")
        if self.audio_weights is not None and audio is None:
            raise ValueError("audio_weights initialise MFCCNet: configure an audio input")
        return self

    @property
    def summed_attention(self) -> bool:
        return self.faithful if self.batch_summed_attention is None else self.batch_summed_attention

    @property
    def video_stem_relu(self) -> bool:
        return (not self.faithful) if self.stem_relu is None else self.stem_relu

    def for_fold(self, fold: int | None) -> CFNSRConfig:
        return resolve_weights(self, fold)

    def for_inference(self) -> CFNSRConfig:
        return self.model_copy(update={name: None for name in WEIGHT_FIELDS})

    @classmethod
    def reference(cls, name: str) -> CFNSRConfig:
        if name == "ravdess":  # 30 face frames of 224x224 and MFCC [13, 212], 8 emotions
            return cls(
                modalities={"audio": ModalitySpec(dim=13), "visual": ModalitySpec(dim=3, kind="clip")},
                num_classes=8,
                task="single_label",
                audio_frames=212,
            )
        raise ValueError(f"CFN-SR has no reference configuration {name!r}")


WEIGHT_FIELDS = ("video_weights", "audio_weights")
FOLD_FIELDS = {"fold", "fold_number"}


def _placeholders(path: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(path) if field is not None}


def resolve_weights(config: CFNSRConfig, fold: int | None) -> CFNSRConfig:
    """The configuration with its weights paths for this fold (None: a run without folds).

    A backbone pretrained on one fold's training actors has seen every other fold's test actors, so one
    file for all the folds of a cross-validation leaks test actors into training: with a fold, a path without
    a fold placeholder is refused unless `weights_exclude_test_actors` says the file was trained without any
    of them. The trainer calls this once per fold, before building the model.
    """
    updates = {}
    for name in WEIGHT_FIELDS:
        path = getattr(config, name)
        if path is None:
            continue
        fields = _placeholders(path)
        if fields - FOLD_FIELDS:
            raise ConfigError(f"CFN-SR {name} {path!r}: unknown placeholder(s) {sorted(fields - FOLD_FIELDS)}")
        if fields:
            if fold is None:
                raise ConfigError(f"CFN-SR {name} {path!r} names a fold, but this run has no folds")
            updates[name] = path.format(fold=fold, fold_number=fold + 1)
        elif fold is not None and not config.weights_exclude_test_actors:
            raise ConfigError(
                f"CFN-SR {name} {path!r} is one file for every fold: a backbone trained on a fold's training "
                "actors has seen the other folds' test actors, so it would leak them into training; give one "
                "file per fold ({fold} or {fold_number} in the path), or set weights_exclude_test_actors=true "
                "if this file was trained without any of the test actors"
            )
    return config.model_copy(update=updates)


def _load_backbone(module: nn.Module, config: CFNSRConfig, name: str, classifier: str) -> None:
    path = getattr(config, name)
    if path is None:
        return
    if _placeholders(path):
        raise ConfigError(f"CFN-SR {name} {path!r} is a per-fold path: resolve it with resolve_weights(config, fold)")
    load_weights(module, path, ignore=(classifier,))


def _zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero x [B, C, T] from each sample's length on."""
    real = torch.arange(x.shape[-1], device=x.device) < lengths.unsqueeze(1)
    return x * real.unsqueeze(1).to(x.dtype)


class MFCCNet(nn.Module):
    """MSAF's audio CNN: Conv1d(D, 32, 7, p2) -> ReLU -> BN -> Conv1d(32, 32, 7, p2) -> ReLU -> MaxPool(8)
    -> BN -> Dropout(0.2) -> Conv1d(32, 64, 5, p2) -> ReLU -> BN: [B, D, T] -> [B, 64, (T - 4) // 8].

    Steps past a sample's length are zeroed before every layer that mixes steps, so padding never reaches a
    real output step and a sample gives the same output alone or padded in a batch (eval mode). Sequences
    shorter than MIN_FRAMES are zero-padded to it, and that padding counts as (silent) signal.
    """

    MIN_FRAMES = 12  # the shortest input that leaves one step after the two convolutions and the pool

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, 32, kernel_size=7, padding=2)
        self.bn1 = nn.BatchNorm1d(32)
        self.conv2 = nn.Conv1d(32, 32, kernel_size=7, padding=2)
        self.pool = nn.MaxPool1d(8)
        self.bn2 = nn.BatchNorm1d(32)
        self.dropout = nn.Dropout(0.2)
        self.conv3 = nn.Conv1d(32, AUDIO_CHANNELS, kernel_size=5, padding=2)
        self.bn3 = nn.BatchNorm1d(AUDIO_CHANNELS)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, D, T], lengths [B] (real steps, padding at the end) -> [B, 64, T'] and the output lengths."""
        x = _zero_padding(x, lengths)  # a short sample's padding counts as silence, whatever it held
        if x.shape[-1] < self.MIN_FRAMES:
            x = nn.functional.pad(x, (0, self.MIN_FRAMES - x.shape[-1]))
        lengths = lengths.clamp_min(self.MIN_FRAMES)
        x = self.bn1(self.relu(self.conv1(_zero_padding(x, lengths))))
        lengths = lengths - 2
        x = self.dropout(self.bn2(self.pool(self.relu(self.conv2(_zero_padding(x, lengths))))))
        lengths = (lengths - 2) // 8  # the pool's windows that hold real steps only
        x = self.bn3(self.relu(self.conv3(_zero_padding(x, lengths))))
        return _zero_padding(x, lengths), lengths


@register_model(
    name="cfnsr",
    title="CFN-SR: cross-modal fusion with self-attention and residual structure",
    paper="arXiv 2111.02172",
    task="single_label",
    input_unit="utterance",
    modalities=("audio", "visual"),
    input_kinds=("sequence", "vector", "clip"),
    config_class=CFNSRConfig,
    objective=ClassificationObjective,
    preset="cfnsr",
    references={"ravdess": 26_301_417},
    small={"video_dim": 16, "transformer_layers": 1, "transformer_heads": 2},
)
class CFNSR(EmotionModel):
    def __init__(self, config: CFNSRConfig) -> None:
        super().__init__(config)
        audio, visual = config.modalities.get("audio"), config.modalities.get("visual")
        head_width = 0

        self.video: nn.Module | None = None
        if visual is not None:
            if visual.kind == "clip":
                self.video = ResNeXt3D(
                    config.video_layers, config.video_cardinality, stem_relu=config.video_stem_relu,
                    width=config.video_width, checkpointing=config.video_checkpointing,
                )
                _load_backbone(self.video, config, "video_weights", classifier="fc.")
            else:
                self.video = nn.Sequential(nn.Linear(visual.dim, config.video_dim), nn.ReLU())
            head_width += config.video_dim

        self.audio: MFCCNet | None = None
        if audio is not None:
            self.audio = MFCCNet(audio.dim)
            _load_backbone(self.audio, config, "audio_weights", classifier="fc1.")
            self.audio_dropout = nn.Dropout(config.audio_dropout)
            steps = 1 if config.audio_frames is None else (config.audio_frames - 4) // 8
            head_width += AUDIO_CHANNELS * steps

        self.cross_modal = config.cross_modal and audio is not None and visual is not None
        if self.cross_modal:
            self.audio_attention = MulTEncoder(
                AUDIO_CHANNELS,
                config.transformer_heads,
                config.transformer_layers,
                embed_dropout=config.embed_dropout,
                dropout=config.transformer_dropout,
                causal=True,
            )
            self.audio_query = nn.Linear(AUDIO_CHANNELS, AUDIO_CHANNELS, bias=False)
            self.video_key = nn.Linear(config.video_dim, AUDIO_CHANNELS)
            self.attention_score = nn.Linear(AUDIO_CHANNELS, 1)

        self.head = nn.Linear(head_width, config.num_classes)

    def _video_map(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The video map as [B, S, P, C] (S temporal slices of P positions) and its [B, S, P] real mask."""
        spec = self.config.modalities["visual"]
        if spec.kind == "clip":
            if x.dim() != 5 or x.shape[1] != 3:
                raise ConfigError(f"modality 'visual': expected clips [B, 3, T, H, W], got shape {tuple(x.shape)}")
            v = self.video.forward_features(x)  # [B, C, S, H, W]
            v = v.flatten(3).permute(0, 2, 3, 1)
            return v, torch.ones(v.shape[:3], dtype=torch.bool, device=v.device)
        x, real = sequence_input("visual", spec, x, mask)
        return self.video(x).unsqueeze(1), real.unsqueeze(1)  # one slice whose positions are the frames

    def _audio_map(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """MFCCNet's output [B, 64, T'] and its output lengths [B]."""
        x, real = sequence_input("audio", self.config.modalities["audio"], x, mask)
        lengths = real.sum(dim=1)
        first = torch.arange(real.shape[1], device=real.device) < lengths.unsqueeze(1)
        if checks_values() and not bool((real == first).all()):
            raise ConfigError("modality 'audio': the mask must mark real steps first and padding at the end")
        frames = self.config.audio_frames
        if frames is not None:
            if x.shape[1] > frames:
                raise ConfigError(f"modality 'audio': {x.shape[1]} frames, but the configuration flattens {frames}")
            x = nn.functional.pad(x, (0, 0, 0, frames - x.shape[1]))
        return self.audio(x.transpose(1, 2), lengths)

    def _attend(self, v: torch.Tensor, v_real: torch.Tensor, a: torch.Tensor, a_lengths: torch.Tensor) -> torch.Tensor:
        """Audio-guided attention over the video map's positions, with the residual."""
        steps = a.transpose(1, 2)  # [B, T', 64]
        a_real = torch.arange(steps.shape[1], device=a.device) < a_lengths.unsqueeze(1)
        h = self.audio_attention(steps, a_real)
        # The causal mask lets the last real step see the whole (real) sequence and no padding.
        last = h[torch.arange(h.shape[0], device=h.device), a_lengths - 1]
        query = self.audio_query(last)[:, None, None, :]  # [B, 1, 1, 64]
        energy = self.attention_score(torch.tanh(self.video_key(v) + query)).squeeze(-1)  # [B, S, P]
        alpha = torch.softmax(energy.masked_fill(~v_real, float("-inf")), dim=-1)  # per temporal slice
        if self.config.summed_attention:
            alpha = alpha.sum(dim=0, keepdim=True)  # the released code: one map, summed over the batch
        attended = v * alpha.unsqueeze(-1)
        return attended + v if self.config.residual else attended

    def forward(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None
    ) -> ModelOutput:
        """inputs["visual"] [B, 3, T, H, W] (clip) or [B, T, D] / [B, D]; inputs["audio"] [B, T, D] / [B, D];
        masks [B, T] (True = real) -> logits [B, C]."""
        masks = masks or {}
        summaries = []
        a = a_lengths = None
        if self.audio is not None:
            a, a_lengths = self._audio_map(inputs["audio"], masks.get("audio"))
        if self.video is not None:
            v, v_real = self._video_map(inputs["visual"], masks.get("visual"))
            if self.cross_modal:
                v = self._attend(v, v_real, a, a_lengths)
            weights = v_real.unsqueeze(-1).to(v.dtype)  # mean over the real positions of every slice
            summaries.append((v * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)))
        if a is not None:
            if self.config.audio_frames is None:
                summary = a.sum(dim=2) / a_lengths.unsqueeze(1).to(a.dtype)
            else:
                summary = a.flatten(1)
            summaries.append(self.audio_dropout(summary))
        return ModelOutput(logits=self.head(torch.cat(summaries, dim=1)))
