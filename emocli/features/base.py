"""What an extractor is: a pure function of one sample's media and a set of parameters.

An extractor declares its parameters as a frozen pydantic model, so its settings serialise to JSON and
every feature set can say exactly how it was made. The feature store keys work on
(input fingerprint, extractor name, parameters, library versions): see `Extractor.fingerprint`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emocli.core.errors import ConfigError
from emocli.core.types import FeatureKind, Features, Modality

NONFINITE_DEFAULT = "fail"
# ExtractorParams' own parameters added after feature sets were stored (see Extractor.later_params).
LATER_IN_EVERY_EXTRACTOR = frozenset({"nonfinite"})


class ExtractorParams(BaseModel):
    """Base of every extractor's parameters: frozen, unknown keys rejected.

    `nonfinite` is every extractor's: what an output holding NaN or infinite values becomes. It is part
    of a feature set's identity only when it is not the default, so repaired features get a feature set
    of their own and stores written before it existed keep their names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    nonfinite: Literal["fail", "zero"] = Field(
        NONFINITE_DEFAULT,
        description="an output with NaN or infinite values: fail (recorded as the sample's failure) or zero "
        "(those values stored as 0)",
    )


def package_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the distributions whose code shapes an extractor's output."""
    return dict(_installed_versions(distributions))


@functools.cache  # every feature-set name needs them, and each metadata lookup scans sys.path
def _installed_versions(distributions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    versions = []
    for name in distributions:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "absent"))
    return tuple(versions)


class Extractor(ABC):
    """Base class of feature extractors.

    Subclasses set the class attributes and implement `dim`, `extract` (or `extract_batch`),
    and `input_fingerprint`. CPU extractors are run one sample at a time in worker processes;
    neural encoders set `batch_size > 1` and are run in batches in the main process (on a Ray cluster,
    both run as tasks: emocli.features.ray_runner).
    """

    name: ClassVar[str]
    modality: ClassVar[Modality]
    kind: FeatureKind  # a class attribute, or a property where the parameters decide it
    Params: ClassVar[type[ExtractorParams]]
    batch_size: ClassVar[int] = 1
    # Rebuilt in other processes and on other machines from its class and Params (ExtractorRecipe). False
    # where its inputs live in the memory of the process that built it: it then runs only there.
    portable: ClassVar[bool] = True
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions recorded in the provenance
    # Parameters that change where or how fast it runs, not what it outputs: not part of its identity.
    execution_params: ClassVar[frozenset[str]] = frozenset()
    # Parameters added after feature sets of this extractor were stored: left out of the identity while
    # at their default, so those feature sets keep their names and still match their presets. Their
    # defaults must never change (a stored feature set would then be taken for another configuration).
    later_params: ClassVar[frozenset[str]] = frozenset()
    # False where the features come from somewhere a new file is not (a table of a dataset's own clips):
    # `emo predict` then refuses a run that reads them, before loading it.
    reads_new_media: ClassVar[bool] = True

    def __init__(self, params: ExtractorParams | None = None, **overrides: Any):
        values = {**(params.model_dump() if params is not None else {}), **overrides}
        try:
            self.params = self.Params.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in error.errors()
            )
            raise ConfigError(f"invalid parameters for extractor {self.name!r}: {problems}") from None

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature width D."""

    def feature_names(self) -> list[str] | None:
        """Names of the D features, where they have names (openSMILE, action units)."""
        return None

    def versions(self) -> dict[str, str]:
        return package_versions(*self.libraries)

    def prepare(self, samples):  # pandas.DataFrame -> pandas.DataFrame
        """Whole-table hook run once before extraction (e.g. build dialogue context). Default: no-op."""
        return samples

    @abstractmethod
    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        """Identity of what this extractor reads from `sample` (file size+mtime, text hash, ...)."""

    def extract(self, sample: Mapping[str, Any]) -> Features:
        return self.extract_batch([sample])[0]

    def batch_order(self, samples: Sequence[Mapping[str, Any]]) -> list[int] | None:
        """The order in which a batched encoder takes `samples` (e.g. by length, so that its batches pad
        little); None keeps theirs. Results are reported per sample whatever the order."""
        return None

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        return [self.extract(sample) for sample in samples]

    def spec(self) -> dict[str, Any]:
        """Everything that determines the output: the provenance stored with the features."""
        return {
            "extractor": self.name,
            "modality": self.modality,
            "kind": self.kind,
            "dim": self.dim,
            "params": self.identity_params(),
            "versions": self.versions(),
        }

    def identity_params(self) -> dict[str, Any]:
        """The parameters that determine the output (what a feature set records and is matched on)."""
        return self.identity_of(self.params)

    @classmethod
    def identity_of(cls, params: ExtractorParams) -> dict[str, Any]:
        """`identity_params` of these parameters, without building the extractor (its library or model
        need not be installed where stored features are only read)."""
        fields = cls.Params.model_fields
        return {
            k: v
            for k, v in params.model_dump(mode="json").items()
            if k not in cls.execution_params
            and not (k in cls.later_params | LATER_IN_EVERY_EXTRACTOR and v == fields[k].default)
        }

    def fingerprint(self) -> str:
        blob = json.dumps(
            {k: v for k, v in self.spec().items() if k != "dim"}, sort_keys=True, default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def feature_set_name(self) -> str:
        """Directory name of this configuration's feature set in a store."""
        return f"{self.modality}__{self.name}__{self.fingerprint()}"
