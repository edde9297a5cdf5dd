"""The model registry: the single source of truth for `emo models`, the CLI's choices, docs and tests.

Entries are plain data so that `emo --help` imports no torch; `ModelEntry.build` imports the model's
module on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emocli.core.errors import ConfigError
from emocli.core.lazy import import_object


@dataclass(frozen=True)
class ModelEntry:
    name: str
    title: str
    paper: str
    task: str  # the head of the reference configuration
    input_unit: str  # "utterance" or "dialogue"
    modalities: tuple[str, ...]
    input_kinds: tuple[str, ...]
    spiking: bool
    module: str
    model_class: str
    config_class: str
    # reference configuration name -> parameter count of the original model
    references: dict[str, int] = field(default_factory=dict)
    # the papers give some counts rounded (31.46 M): the allowed absolute difference
    reference_tolerance: int = 0

    def classes(self):
        return import_object(f"{self.module}:{self.model_class}"), import_object(f"{self.module}:{self.config_class}")

    def config(self, reference: str | None = None, **overrides):
        """A configuration: a named reference (see `references`) with overrides, or overrides alone."""
        _, config_cls = self.classes()
        if reference is not None:
            if reference not in self.references:
                raise ConfigError(
                    f"{self.name} has no reference configuration {reference!r}; "
                    f"choose one of {', '.join(self.references)}"
                )
            base = config_cls.reference(reference)
            return config_cls.model_validate({**base.model_dump(), **overrides})
        return config_cls.model_validate(overrides)

    def build(self, config):
        model_cls, _ = self.classes()
        return model_cls(config)


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="smile",
            title="SMILE: spiking multi-modal interactive label-guided enhancement",
            paper="ICME 2024",
            task="multi_label",
            input_unit="utterance",
            modalities=("text", "audio", "visual"),
            input_kinds=("sequence", "vector"),
            spiking=True,
            module="emocli.models.smile",
            model_class="SMILE",
            config_class="SMILEConfig",
            references={"mosei": 185_793},
        ),
        ModelEntry(
            name="spikemo",
            title="SpikEmo: spiking temporal-dynamic attention for emotion in conversation",
            paper="arXiv 2411.13917",
            task="single_label",
            input_unit="dialogue",
            modalities=("text", "audio", "visual"),
            input_kinds=("vector",),
            spiking=True,
            module="emocli.models.spikemo",
            model_class="SpikEmo",
            config_class="SpikEmoConfig",
            references={"meld": 31_460_000},
            reference_tolerance=5_000,
        ),
        ModelEntry(
            name="mmer",
            title="MMER: adversarial temporal masking and parameter perturbation",
            paper="WWW 2023",
            task="multi_label",
            input_unit="utterance",
            modalities=("text", "audio", "visual"),
            input_kinds=("sequence", "vector"),
            spiking=False,
            module="emocli.models.mmer",
            model_class="MMER",
            config_class="MMERConfig",
            references={"mosei": 28_610_000},
            reference_tolerance=5_000,
        ),
        ModelEntry(
            name="cfnsr",
            title="CFN-SR: cross-modal fusion with self-attention and residual structure",
            paper="arXiv 2111.02172",
            task="single_label",
            input_unit="utterance",
            modalities=("audio", "visual"),
            input_kinds=("sequence", "vector", "clip"),
            spiking=False,
            module="emocli.models.cfnsr",
            model_class="CFNSR",
            config_class="CFNSRConfig",
            references={"ravdess": 26_301_417},
        ),
    )
}


def get_model(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
