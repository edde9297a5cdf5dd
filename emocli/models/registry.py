"""The model registry: the single source of truth for `emo models`, the CLI's choices, docs and tests.

A model is one file that ends with its registration, in the spirit of timm's `@register_model`:

    @register_model(
        name="smile", title="SMILE: ...", paper="ICME 2024", task="multi_label", input_unit="utterance",
        modalities=("text", "audio", "visual"), input_kinds=("sequence", "vector"), config=SMILEConfig,
        objective=SmileObjective, references={"mosei": 185_793}, preset="smile",
    )
    class SMILE(EmotionModel): ...

Built-in models are the modules named in `BUILTIN`; other packages add theirs through the entry-point
group `emocli.models` (`toy = "my_package.toy_model"`: the module that registers model `toy`), the
standard plugin mechanism, so a user installs a model and nothing in emo changes. A module is imported
only when its model is used, so listing the names (`emo --help`) imports no torch.

`catalog.json` beside this file holds what the built-in registrations declare, as data, so that `emo models`
answers without importing torch (a second or more on a small CPU); it is generated from the registrations
(`python -m emocli.models.registry`) and a test checks that it still equals them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import import_module, metadata, resources
from typing import TYPE_CHECKING, Any, Literal

from emocli.core.errors import ConfigError
from emocli.core.types import FeatureKind, Modality, Task

if TYPE_CHECKING:
    from emocli.models.base import EmotionModel, ModelConfig
    from emocli.models.objectives import Objective

ENTRY_POINT_GROUP = "emocli.models"
BUILTIN = {name: f"emocli.models.{name}" for name in ("smile", "spikemo", "mmer", "cfnsr", "linear")}
InputUnit = Literal["utterance", "dialogue"]
TrainStepName = Literal["standard", "perturbation"]


@dataclass(frozen=True)
class ModelEntry:
    """What a model declares about itself: everything the CLI, the trainer and the docs read."""

    name: str
    title: str
    paper: str
    task: Task  # the head of its reference configurations
    input_unit: InputUnit  # "dialogue": conversation models read whole dialogues ([B, L, ...])
    modalities: tuple[Modality, ...]
    input_kinds: tuple[FeatureKind, ...]
    model_class: type[EmotionModel]
    config_class: type[ModelConfig]
    objective: type[Objective]  # the paper's losses and how logits become probabilities
    # How one optimisation step runs (training/steps.py): "perturbation" = MMER's adversarial parameter
    # perturbation, which needs the model's `perturbation_parameters()`.
    train_step: TrainStepName = "standard"
    preset: str = "default"  # the training preset used when none is named (emocli/presets/train/)
    # reference configuration name -> parameter count of the original model, None where no count is
    # published; every name must build (`config_class.reference(name)`, tested)
    references: dict[str, int | None] = field(default_factory=dict)
    reference_tolerance: int = 0  # the papers give some counts rounded (31.46 M): the allowed difference
    # Overrides that make a miniature of the model (a few thousand parameters): what the contract test that
    # every registered model passes (tests/test_model_contract.py) builds, and a quick configuration to try.
    small: dict[str, Any] = field(default_factory=dict)

    @property
    def spiking(self) -> bool:
        from emocli.models.blocks.spiking import SpikingModel

        return issubclass(self.model_class, SpikingModel)

    @property
    def conversation(self) -> bool:
        return self.input_unit == "dialogue"

    def config(self, reference: str | None = None, **overrides: Any) -> ModelConfig:
        """A configuration: a named reference (see `references`) with overrides, or overrides alone."""
        if reference is None:
            return self.config_class.model_validate(overrides)
        if reference not in self.references:
            choices = ", ".join(self.references) or "none"
            raise ConfigError(f"{self.name} has no reference configuration {reference!r}; choose one of {choices}")
        base = self.config_class.reference(reference)
        return self.config_class.model_validate({**base.model_dump(), **overrides})

    def build(self, config: ModelConfig) -> EmotionModel:
        return self.model_class(config)

    def describe(self) -> dict[str, Any]:
        """What `emo models` and the docs show: the declaration as data (no classes)."""
        return {
            "name": self.name, "title": self.title, "paper": self.paper, "task": self.task,
            "input_unit": self.input_unit, "modalities": list(self.modalities), "input_kinds": list(self.input_kinds),
            "spiking": self.spiking, "train_step": self.train_step, "preset": self.preset,
            "references": dict(self.references), "reference_tolerance": self.reference_tolerance,
        }


_REGISTERED: dict[str, ModelEntry] = {}


def register_model(**declaration: Any):
    """Class decorator: register the decorated `EmotionModel` under `declaration["name"]`."""

    from emocli.models.base import PerturbableModel

    def decorate(model_class: type[EmotionModel]) -> type[EmotionModel]:
        entry = ModelEntry(model_class=model_class, **declaration)
        if entry.train_step == "perturbation" and not issubclass(model_class, PerturbableModel):
            raise TypeError(f"{entry.name}: the perturbation step needs a PerturbableModel")
        _REGISTERED[entry.name] = entry
        return model_class

    return decorate


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def model_names() -> list[str]:
    """Every model's name, built-in first, without importing any model (for CLI choices)."""
    return list(BUILTIN) + sorted(set(_plugins()) - set(BUILTIN))


def get_model(name: str) -> ModelEntry:
    """The registered model `name`, importing the module that registers it."""
    module = BUILTIN.get(name) or _plugins().get(name)
    if module is None:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    if name not in _REGISTERED:
        try:
            import_module(module)
        except ImportError as error:
            raise ConfigError(f"model {name!r}: cannot import {module} ({error})") from None
    if name not in _REGISTERED:
        raise ConfigError(f"model {name!r}: {module} registers no model of that name (@register_model)")
    return _REGISTERED[name]


def all_models() -> dict[str, ModelEntry]:
    return {name: get_model(name) for name in model_names()}


CATALOG = "catalog.json"


def catalog() -> list[dict[str, Any]]:
    """Every model's declaration as data: the built-in ones from catalog.json (no import), plugins imported."""
    built_in = json.loads((resources.files("emocli.models") / CATALOG).read_text(encoding="utf-8"))
    return built_in + [get_model(name).describe() for name in model_names() if name not in BUILTIN]


def write_catalog() -> str:
    """catalog.json from the built-in registrations (run after changing one: `python -m emocli.models.registry`)."""
    text = json.dumps([get_model(name).describe() for name in BUILTIN], indent=2) + "\n"
    (resources.files("emocli.models") / CATALOG).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":  # the registrations land in the imported module, not in __main__
    from emocli.models import registry

    registry.write_catalog()
