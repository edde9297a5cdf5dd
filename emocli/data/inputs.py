"""Which feature sets feed a model: one per modality, from `--feature` choices or the store's only fit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from emocli.core.errors import ConfigError
from emocli.core.types import LabelMap
from emocli.features.presets import extraction_presets, preset_params

if TYPE_CHECKING:
    from emocli.features.store import FeatureSetInfo, FeatureStore


class FeatureReader(Protocol):
    """What `select_inputs` needs to know of a consumer of features: a registry model (ModelEntry) or the
    linear floor."""

    name: str
    modalities: tuple[str, ...]
    input_kinds: tuple[str, ...]


@dataclass(frozen=True)
class InputSpec:
    """One model input: a feature set of the store, and what predict needs to remake it."""

    modality: str
    feature_set: str
    extractor: str
    kind: str  # "vector" or "sequence"
    dim: int
    extractor_spec: dict[str, Any]  # Extractor.spec(): name, params, versions

    def to_json(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "feature_set": self.feature_set,
            "extractor": self.extractor,
            "kind": self.kind,
            "dim": self.dim,
            "extractor_spec": self.extractor_spec,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**data)

    @classmethod
    def from_info(cls, info: FeatureSetInfo) -> InputSpec:
        return cls(
            modality=info.modality,
            feature_set=info.name,
            extractor=info.extractor,
            kind=info.kind,
            dim=info.dim,
            extractor_spec=info.spec.get("extractor", {}),
        )


def _matches(info: FeatureSetInfo, choice: str, dataset_root: Path | None) -> bool:
    """A `--feature` choice names a feature set, an extractor, or an extraction preset (name or file).

    A preset matches the feature set its extractor and parameters (defaults filled in, `{root}` resolved
    against the store's dataset) would write, whatever library versions made it.
    """
    if choice in (info.name, info.extractor):
        return True
    if choice not in extraction_presets() and not choice.endswith(".toml"):
        return False
    kind, params = preset_params(choice, root=dataset_root)
    recorded = info.spec.get("extractor", {})
    return kind.name == info.extractor and kind.identity_of(params) == recorded.get("params")


def select_inputs(
    store: FeatureStore,
    reader: FeatureReader,
    modalities: list[str] | None = None,
    choices: dict[str, str] | None = None,
) -> dict[str, InputSpec]:
    """One feature set per modality: the model's modalities (or the requested subset) that the store has.

    A modality with a `choices` entry takes the feature set it names; otherwise the store must hold exactly
    one feature set of that modality in a kind the model reads (else the choice is ambiguous and the
    error lists the candidates). Requested modalities must be found; unrequested ones are optional.
    """
    choices = dict(choices or {})
    unknown = set(choices) - set(reader.modalities)
    if unknown:
        raise ConfigError(f"{reader.name} has no modality {sorted(unknown)}; it reads {list(reader.modalities)}")
    wanted = list(modalities) if modalities else list(reader.modalities)
    for modality in wanted:
        if modality not in reader.modalities:
            raise ConfigError(f"{reader.name} reads {list(reader.modalities)}, not {modality!r}")
    selected: dict[str, InputSpec] = {}
    for modality in wanted:
        candidates = [i for i in store.find(modality=modality) if i.kind in reader.input_kinds and i.n_rows]
        if modality in choices:
            root = store.dataset().get("root")
            matching = [
                i for i in store.find(modality=modality) if _matches(i, choices[modality], root and Path(root))
            ]
            if not matching:
                known = ", ".join(i.name for i in store.find(modality=modality)) or "none"
                raise ConfigError(
                    f"--feature {modality}={choices[modality]}: no such feature set (the store's {modality} "
                    f"feature sets: {known})",
                    path=store.path,
                )
            if len(matching) > 1:
                names = ", ".join(i.name for i in matching)
                raise ConfigError(f"--feature {modality}={choices[modality]} is ambiguous: {names}", path=store.path)
            if matching[0].kind not in reader.input_kinds:
                raise ConfigError(
                    f"{matching[0].name} holds {matching[0].kind} features; {reader.name} reads "
                    f"{', '.join(reader.input_kinds)}",
                    path=store.path,
                )
            candidates = matching
        elif len(candidates) > 1:
            names = ", ".join(i.name for i in candidates)
            raise ConfigError(
                f"several {modality} feature sets fit {reader.name}: {names}; choose one with "
                f"--feature {modality}=<name or extractor>",
                path=store.path,
            )
        if candidates:
            selected[modality] = InputSpec.from_info(candidates[0])
        elif modalities:
            raise ConfigError(f"the store has no {modality} features {reader.name} can read", path=store.path)
    if not selected:
        raise ConfigError(
            f"the store has no features {reader.name} can read ({', '.join(reader.modalities)} as "
            f"{', '.join(reader.input_kinds)}); run `emo extract` first",
            path=store.path,
        )
    return selected


def store_label_map(store: FeatureStore) -> LabelMap:
    """The dataset's label map, as the adapter described it when the store was written."""
    labels = store.dataset().get("labels")
    if not labels:
        raise ConfigError("the store records no label map (samples.parquet metadata)", path=store.path)
    return LabelMap.from_json(labels)


