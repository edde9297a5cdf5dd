"""Dataset adapters: what turns a dataset folder (or manifest) into the canonical sample table
(emocli.core.samples) that every later stage reads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from emocli.core.samples import SampleSet


class AdapterOptions(BaseModel):
    """Options of an adapter; subclasses add fields. Serialised into the feature store's provenance."""

    model_config = ConfigDict(extra="forbid")


class DatasetAdapter(ABC):
    """Turns a dataset folder (or file) into a SampleSet."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_on_disk: ClassVar[str]  # shown by `emo datasets`: the files the adapter reads
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions

    def __init__(self, options: AdapterOptions | None = None, **overrides):
        self.options = options if options is not None else self.Options(**overrides)

    @abstractmethod
    def load(self, root: Path) -> SampleSet:
        """Read the dataset at `root`; raise DatasetError naming the file and problem when it is malformed."""
