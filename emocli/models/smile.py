"""SMILE: spiking multi-modal interactive label-guided enhancement network (ICME 2024). Released code:
github.com/sleepy2333/SMILE (commit 336bca1): model.py, transformer.py, decoder.py, train.py.

Forward (as released), d = 30 everywhere, every "Enc" a one-layer post-LN BERT-style transformer whose embedding
is applied to its query and to its key/value input separately:
  x̃_m  = Linear_m(x_m) (no bias; the text gets input dropout 0.25 first)
  h_m  = Enc(x̃_m, x̃_m)                                          modality encoders b^t, b^a, b^v
  r_m  = mean_T LIF(Linear(LIF(Linear(x̃_m))))  for m in audio, visual: the spiking branch s^a, s^v,
         T = 5 steps of the same input; both LIFs use the dynamic threshold ξ (below)
  g_m  = h_m + h_m ⊙ softmax(r_m)                               spiking-scaled attention
  E_m  = h_m + Enc(h_m, g_m)
  h_av = Enc(E_a, E_v), h_va = Enc(E_v, E_a)                     audio-visual interaction
  h_lav, h_lva = Enc(x̃_l, h_av), Enc(x̃_l, h_va); h_avl, h_val = Enc(h_av, x̃_l), Enc(h_va, x̃_l)
  S    = concat_time[h_lav, h_lva, h_avl, h_val, h_l, h_a, h_v]
  z_c  = Decoder(label query c, S), one BERT decoder layer over C learned label queries
  logit_c = Dropout_0.1(Linear(z_c))                            shared over labels; the dropout is on the logit
Dynamic threshold (model.py): ξ_u = CE_u / CE_{u-1}, with CE_u = CrossEntropy(x̃_a as logits over the d
channels, target argmax_d x̃_v) over the frames, CE_0 = 1. ξ and CE_{u-1} live in the buffers `threshold` and
`previous_ce` (saved with the model). `threshold_update` says when they change: "every_forward" (the
released code: every batch, validation and test included), "train_only" (our default: training forwards
only, so an eval-mode model is a fixed function) or "frozen".

Modality subsets (our generalisation; the released model needs all three): the spiking branch and E_m
exist for each of audio and visual that is present. With both, the interaction streams are h_av and h_va;
with one of them, its E_m is the single stream. With text, each stream s adds Enc(x̃_l, s) and Enc(s, x̃_l).
S concatenates those cross streams (or the plain streams without text) and the present h_m. The threshold
needs audio and visual frames side by side: without both it stays at its stored value. When audio and
visual have different lengths, CE is taken between their per-sample (masked) time means.

Inputs: [B, T, D] with masks[m] [B, T] (True = real) or vectors [B, D] (length-1 sequences). Padded frames
are masked out of every attention and of the time softmax. The released code has no masks (aligned MOSEI,
60 frames each): pass none to reproduce it. Logits [B, C], pre-activation; in training they include the
logit dropout. The released loss is BCE on sigmoid outputs with targets smoothed to |y - 0.2| (train.py).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from emocli.core.types import real_utterances
from emocli.models.base import ModelConfig, ModelOutput, aligned_mosei
from emocli.models.blocks.attention import sequence_input
from emocli.models.blocks.spiking import LIFImplementation, SpikingBackend, SpikingModel, lif
from emocli.models.losses import smoothed_bce
from emocli.models.objectives import Objective, ObjectiveParams
from emocli.models.registry import register_model

MODALITIES = ("text", "audio", "visual")
NONVERBAL = ("audio", "visual")
TOKEN_TYPES = 32  # the released transformer.py's type_vocab_size
INITIAL_THRESHOLD = 0.8  # the released LIF constructor value; used only until the first threshold update


class SMILEConfig(ModelConfig):
    # Transformer widths, as released: d = 30, 5 heads of 6, FFN 4d in the encoders, 256 in the decoder.
    d_model: int = 30
    heads: int = 5
    encoder_layers: int = 1
    encoder_ffn_dim: int = 120
    decoder_layers: int = 1
    decoder_ffn_dim: int = 256
    # Dropouts, as released: 0.1 in the encoders' hidden path; attention-probability dropout 0.1 in every encoder
    # that involves text and 0.0 in the audio/visual-only ones; 0.3 everywhere in the decoder.
    text_input_dropout: float = 0.25
    dropout: float = 0.1
    text_attention_dropout: float = 0.1
    nonverbal_attention_dropout: float = 0.0
    decoder_dropout: float = 0.3
    logit_dropout: float = 0.1  # Dropout(Linear(z_c)) on the logit itself, as released

    # Spiking branch (the released `snn` module): Linear(d -> 128) -> LIF -> Linear(128 -> d) -> LIF, τ = 2, T = 5.
    snn_hidden: int = 128
    snn_steps: int = 5
    snn_tau: float = 2.0
    backend: SpikingBackend = "torch"

    # Released-code choices; None follows `faithful`.
    # The released softmax over r_m runs over the batch axis, so a prediction depends on the other samples
    # of its batch; "time" (default) runs over each sample's real frames.
    spike_softmax_axis: Literal["batch", "time"] | None = None
    # When ξ changes (see the module docstring): "every_forward" when faithful, else "train_only".
    threshold_update: Literal["every_forward", "train_only", "frozen"] | None = None
    # The released embedding computes LN(x + (x + PE) + TT): its positional module returns x + PE and the
    # caller adds x again. Default: LN(x + PE).
    double_input_embedding: bool | None = None
    # The released token-type embedding (32 x d per encoder, index 0 = padding_idx) is always the zero
    # vector and never trained, but its 10,560 parameters are in the reference count. Built when faithful.
    token_type_embedding: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> SMILEConfig:
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(f"SMILE takes a non-empty subset of {MODALITIES}, got {sorted(self.modalities)}")
        for name, spec in self.modalities.items():
            if spec.kind not in ("sequence", "vector"):
                raise ValueError(f"SMILE reads sequence or vector features; {name!r} is {spec.kind!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        return self

    @property
    def softmax_axis(self) -> Literal["batch", "time"]:
        if self.spike_softmax_axis is not None:
            return self.spike_softmax_axis
        return "batch" if self.faithful else "time"

    @property
    def threshold_mode(self) -> Literal["every_forward", "train_only", "frozen"]:
        if self.threshold_update is not None:
            return self.threshold_update
        return "every_forward" if self.faithful else "train_only"

    @property
    def embeds_input_twice(self) -> bool:
        return self.faithful if self.double_input_embedding is None else self.double_input_embedding

    @property
    def has_token_type(self) -> bool:
        return self.faithful if self.token_type_embedding is None else self.token_type_embedding

    @classmethod
    def reference(cls, name: str) -> SMILEConfig:
        if name == "mosei":
            return cls(**aligned_mosei(("text", "audio", "visual")), faithful=True)
        raise ValueError(f"SMILE has no reference configuration {name!r}")


def smile_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """SMILE's sinusoidal table [length, dim]: interleaved sin/cos, positions from 0; an odd width drops
    the last column of the next even one (the released PositionalEncoding)."""
    even = dim + dim % 2
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, even, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / even))
    table = torch.zeros(length, even, device=device)
    table[:, 0::2] = torch.sin(position * frequencies)
    table[:, 1::2] = torch.cos(position * frequencies)
    return table[:, :dim]


def key_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A [B, 1, 1, T] additive attention bias: 0 for real keys, the dtype's minimum for padding."""
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)[
        :, None, None, :
    ]


class Embedding(nn.Module):
    """Dropout(LN_1e-12(x + PE [+ x] [+ TT])), shared by an encoder's query and key/value inputs."""

    def __init__(self, d: int, dropout: float, double_input: bool, token_type: bool) -> None:
        super().__init__()
        self.double_input = double_input
        self.token_type = nn.Embedding(TOKEN_TYPES, d, padding_idx=0) if token_type else None
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + smile_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        if self.double_input:
            h = h + x
        if self.token_type is not None:
            # Type id 0 is the padding index: a zero vector with no gradient, as in the released code.
            h = h + self.token_type(torch.zeros(1, dtype=torch.long, device=x.device))
        return self.dropout(self.norm(h))


class Attention(nn.Module):
    """BERT attention block: LN(q + Dropout(W_o · MHA(q, k, v))), probability dropout inside the MHA."""

    def __init__(self, d: int, heads: int, attention_dropout: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.output = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        query, key, value = self._split(self.query(q)), self._split(self.key(k)), self._split(self.value(v))
        scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
        if bias is not None:
            scores = scores + bias
        context = self.attention_dropout(scores.softmax(-1)) @ value
        context = context.transpose(1, 2).reshape(q.shape)
        return self.norm(q + self.dropout(self.output(context)))


class FeedForward(nn.Module):
    """LN(x + Dropout(W_2 act(W_1 x)))."""

    def __init__(self, d: int, hidden: int, activation: nn.Module, dropout: float) -> None:
        super().__init__()
        self.inner, self.activation, self.outer = nn.Linear(d, hidden), activation, nn.Linear(hidden, d)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.outer(self.activation(self.inner(x)))))


class EncoderLayer(nn.Module):
    def __init__(self, config: SMILEConfig, attention_dropout: float) -> None:
        super().__init__()
        d = config.d_model
        self.attention = Attention(d, config.heads, attention_dropout, config.dropout)
        self.feed_forward = FeedForward(d, config.encoder_ffn_dim, nn.ReLU(), config.dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self.feed_forward(self.attention(q, k, v, bias))


class Encoder(nn.Module):
    """The released TransformerEncoder called as Enc(query, context): the query, the keys and the values
    are embedded separately (one module, three dropout masks); every layer attends to the same embedded
    keys and values; the output is the last layer's."""

    def __init__(self, config: SMILEConfig, attention_dropout: float) -> None:
        super().__init__()
        self.embedding = Embedding(
            config.d_model, config.dropout, config.embeds_input_twice, config.has_token_type
        )
        self.layers = nn.ModuleList(EncoderLayer(config, attention_dropout) for _ in range(config.encoder_layers))

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        h, k, v = self.embedding(query), self.embedding(context), self.embedding(context)
        bias = key_bias(context_mask, h.dtype)
        for layer in self.layers:
            h = layer(h, k, v, bias)
        return h


class DecoderLayer(nn.Module):
    """Label self-attention, cross-attention to S, erf-GELU FFN; each post-LN (the released decoder.py)."""

    def __init__(self, config: SMILEConfig) -> None:
        super().__init__()
        d, p = config.d_model, config.decoder_dropout
        self.self_attention = Attention(d, config.heads, p, p)
        self.cross_attention = Attention(d, config.heads, p, p)
        self.feed_forward = FeedForward(d, config.decoder_ffn_dim, nn.GELU(), p)

    def forward(self, labels: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        labels = self.self_attention(labels, labels, labels, None)
        return self.feed_forward(self.cross_attention(labels, memory, memory, bias))


class LabelDecoder(nn.Module):
    """C learned label queries (Embedding -> LN -> Dropout) decoded against S: [B, C, d]."""

    def __init__(self, config: SMILEConfig) -> None:
        super().__init__()
        self.labels = nn.Embedding(config.num_classes, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=1e-12)
        self.dropout = nn.Dropout(config.decoder_dropout)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        labels = self.dropout(self.norm(self.labels.weight)).expand(memory.shape[0], -1, -1)
        bias = key_bias(memory_mask, memory.dtype)
        for layer in self.layers:
            labels = layer(labels, memory, bias)
        return labels


class SpikingBranch(nn.Module):
    """The paper's s^a / s^v: the firing rate of Linear -> LIF -> Linear -> LIF over T steps of one input.

    The released code calls single-step neurons T times on the same input without a reset in between; a
    multi-step neuron over the input repeated T times is the same computation (tests/test_model_smile.py
    checks it bit for bit), and the first Linear, whose input does not change, runs once.
    """

    def __init__(self, d: int, hidden: int, steps: int, tau: float) -> None:
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(d, hidden)
        self.lif1 = lif(tau, INITIAL_THRESHOLD)
        self.fc2 = nn.Linear(hidden, d)
        self.lif2 = lif(tau, INITIAL_THRESHOLD)

    def forward(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        self.lif1.v_threshold = self.lif2.v_threshold = threshold
        current = self.fc1(x).unsqueeze(0).expand(self.steps, *x.shape[:-1], -1)
        return self.lif2(self.fc2(self.lif1(current))).mean(0)


def masked_time_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1)


class SmileObjective(Objective):
    """SMILE's loss: BCE against targets smoothed to 0.8 / 0.2 in training, the raw targets in validation;
    cross entropy for single-label data."""

    paper_threshold = 0.35

    class Params(ObjectiveParams):
        smoothing: float = 0.2

    def losses(
        self, output: ModelOutput, targets: torch.Tensor, utterances: torch.Tensor | None, training: bool
    ) -> dict[str, torch.Tensor]:
        logits = real_utterances(output.logits, utterances)
        if self.multi_label:
            return {"bce": smoothed_bce(logits, targets, self.params.smoothing if training else 0.0)}
        return {"ce": F.cross_entropy(logits, targets)}


@register_model(
    name="smile",
    title="SMILE: spiking multi-modal interactive label-guided enhancement",
    paper="ICME 2024",
    task="multi_label",
    input_unit="utterance",
    modalities=("text", "audio", "visual"),
    input_kinds=("sequence", "vector"),
    config_class=SMILEConfig,
    objective=SmileObjective,
    preset="smile",
    references={"mosei": 185_793},
    small={"d_model": 8, "heads": 2, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16, "snn_hidden": 16},
)
class SMILE(SpikingModel):
    def __init__(self, config: SMILEConfig) -> None:
        super().__init__(config)
        d = config.d_model
        present = [m for m in MODALITIES if m in config.modalities]
        self.modalities = present
        self.nonverbal = [m for m in NONVERBAL if m in present]
        self.lif_implementation = LIFImplementation(config.backend)

        def encoder(*names: str) -> Encoder:
            text = "text" in names
            return Encoder(config, config.text_attention_dropout if text else config.nonverbal_attention_dropout)

        self.text_dropout = nn.Dropout(config.text_input_dropout)
        self.projections = nn.ModuleDict(
            {m: nn.Linear(config.modalities[m].dim, d, bias=False) for m in present}  # Conv1d(k=1, bias=False)
        )
        self.encoders = nn.ModuleDict({m: encoder(m) for m in present})
        self.spiking = nn.ModuleDict(
            {m: SpikingBranch(d, config.snn_hidden, config.snn_steps, config.snn_tau) for m in self.nonverbal}
        )
        self.spike_attention = nn.ModuleDict({m: encoder(m) for m in self.nonverbal})
        self.cross = nn.ModuleDict()
        if len(self.nonverbal) == 2:
            self.cross["audio_visual"] = encoder("audio", "visual")  # Enc(E_a, E_v)
            self.cross["visual_audio"] = encoder("visual", "audio")  # Enc(E_v, E_a)
        if "text" in present:
            for stream in self._stream_names():
                self.cross[f"text_{stream}"] = encoder("text")  # Enc(x̃_l, stream)
            for stream in self._stream_names():
                self.cross[f"{stream}_text"] = encoder("text")  # Enc(stream, x̃_l)
        self.decoder = LabelDecoder(config)
        self.classifier = nn.Linear(d, 1)  # shared over the label queries
        self.logit_dropout = nn.Dropout(config.logit_dropout)

        # The dynamic threshold's state: buffers, so checkpoints carry it.
        self.register_buffer("threshold", torch.tensor(INITIAL_THRESHOLD))
        self.register_buffer("previous_ce", torch.tensor(1.0))  # CE_0 = 1

    def _stream_names(self) -> list[str]:
        return ["audio_visual", "visual_audio"] if len(self.nonverbal) == 2 else list(self.nonverbal)

    def spiking_modules(self) -> dict[str, nn.Module]:
        return {f"spiking.{m}": branch for m, branch in self.spiking.items()}

    def _update_threshold(self, x: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> float:
        mode = self.config.threshold_mode
        update = mode == "every_forward" or (mode == "train_only" and self.training)
        if update and len(self.nonverbal) == 2:
            with torch.no_grad():
                audio, visual = x["audio"], x["visual"]
                if audio.shape[1] == visual.shape[1]:  # aligned frames: the released computation
                    both = masks["audio"] & masks["visual"]
                    audio, visual = audio[both], visual[both]
                else:
                    audio = masked_time_mean(audio, masks["audio"])
                    visual = masked_time_mean(visual, masks["visual"])
                ce = F.cross_entropy(audio.float(), visual.argmax(-1))
                self.threshold.copy_(ce / self.previous_ce.clamp_min(torch.finfo(torch.float32).tiny))
                self.previous_ce.copy_(ce)
        return float(self.threshold)

    def _spike_softmax(self, rate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.config.softmax_axis == "batch":
            return rate.softmax(0)  # the released dim=0, padded frames included
        return rate.masked_fill(~mask.unsqueeze(-1), torch.finfo(rate.dtype).min).softmax(1)

    def forward(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None
    ) -> ModelOutput:
        self.reset_spiking_state()
        masks = masks or {}
        x, m = {}, {}
        for name in self.modalities:
            features, m[name] = sequence_input(name, self.config.modalities[name], inputs[name], masks.get(name))
            if name == "text":
                features = self.text_dropout(features)
            x[name] = self.projections[name](features)

        h = {name: self.encoders[name](x[name], x[name], m[name]) for name in self.modalities}

        # Spiking-scaled attention E_m.
        threshold = self._update_threshold(x, m)
        enhanced = {}
        with self.lif_implementation.active(next(iter(x.values())).device):
            for name in self.nonverbal:
                rate = self.spiking[name](x[name], threshold)
                scaled = h[name] + h[name] * self._spike_softmax(rate, m[name])
                enhanced[name] = h[name] + self.spike_attention[name](h[name], scaled, m[name])

        # Modality-interactive exploration: each stream is (features, mask).
        if len(self.nonverbal) == 2:
            audio, visual = enhanced["audio"], enhanced["visual"]
            streams = {
                "audio_visual": (self.cross["audio_visual"](audio, visual, m["visual"]), m["audio"]),
                "visual_audio": (self.cross["visual_audio"](visual, audio, m["audio"]), m["visual"]),
            }
        else:
            streams = {name: (enhanced[name], m[name]) for name in self.nonverbal}
        if "text" in self.modalities and streams:
            text = x["text"]  # the projected input, not h_l, as released
            parts = [(self.cross[f"text_{s}"](text, f, sm), m["text"]) for s, (f, sm) in streams.items()]
            parts += [(self.cross[f"{s}_text"](f, text, m["text"]), sm) for s, (f, sm) in streams.items()]
        else:
            parts = list(streams.values())
        # S ends with the plain encoder outputs h_m, not E_m, as released.
        parts += [(h[name], m[name]) for name in self.modalities]
        sequence = torch.cat([f for f, _ in parts], dim=1)
        sequence_mask = torch.cat([sm for _, sm in parts], dim=1)

        labels = self.decoder(sequence, sequence_mask)
        logits = self.logit_dropout(self.classifier(labels)).squeeze(-1)
        return ModelOutput(logits=logits)
