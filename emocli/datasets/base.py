"""Dataset adapters: what turns a dataset folder (or manifest) into the canonical sample table
(emocli.core.samples) that every later stage reads.

An adapter also declares, as data, what `emo datasets` shows and `emo extract --dataset NAME` acts on:
its licence, the public files it can be downloaded from (emocli.datasets.download), where a
licence-gated dataset is requested, and the extraction presets used when none are named.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from emocli.core.errors import ConfigError
from emocli.core.samples import SampleSet
from emocli.core.settings import did_you_mean, set_dotted
from emocli.core.types import Modality

ALLOW_PICKLE_HELP = (
    "true: unpickle the data file fully, as the original research code does. Unpickling runs any code the "
    "file names, so set it only for a file from a source you trust; by default only plain data (dicts, "
    "lists, tensors, numpy arrays) is read and a file naming anything else is refused"
)


class AdapterOptions(BaseModel):
    """Options of an adapter; subclasses add fields. Serialised into the feature store's provenance.

    The docstring under each field is its help (`emo datasets NAME` shows it)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    @classmethod
    def parse(cls, adapter: str, values: dict) -> AdapterOptions:
        """The options from `--option KEY=VALUE` pairs (a dotted KEY sets a value in a table: members.fer2013.x=1);
        ConfigError naming the option and the problem."""
        nested: dict = {}
        for key, value in values.items():
            set_dotted(nested, key, value, what="--option")
        try:
            return cls(**nested)
        except ValidationError as error:
            problems = []
            for item in error.errors():
                name = ".".join(map(str, item["loc"])) or "options"
                if item["type"] == "extra_forbidden":
                    problems.append(f"unknown option {name!r}{did_you_mean(name, cls.model_fields)}")
                else:
                    problems.append(f"option {name}={item.get('input')!r}: {item['msg']}")
            known = ", ".join(cls.model_fields) or "none"
            raise ConfigError(f"dataset {adapter}: {'; '.join(problems)} (its options: {known})") from None


class Licence(BaseModel):
    """The terms a dataset comes under, with a one-line meaning for `emo datasets`."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    meaning: str


class Checksum(BaseModel):
    """A digest of a remote file and where the value comes from (the host's listing, a pinned commit)."""

    model_config = ConfigDict(frozen=True)

    algorithm: Literal["sha256", "md5"]
    value: str
    source: str


class RemoteFile(BaseModel):
    """One public file of a dataset and how it lands in the dataset's folder.

    unpack: "none" keeps the file as `name`; "zip" / "tar" unpack it into the folder `into` (default:
    `name` without its archive suffix; archives found inside a tar are unpacked in place, as MELD's
    videos are packed); "python-literals-json" turns a Python file of literal assignments (`x = [...]`)
    into a JSON object `into` by parsing it, never running it.
    """

    model_config = ConfigDict(frozen=True)

    url: str
    name: str
    # bytes; always checked when declared. None: the host publishes no size or checksum (EmoDB): the size the
    # server announces is checked, and the adapter checks the unpacked content (DatasetAdapter.verify_download).
    size: int | None
    checksum: Checksum | None = None  # None: the host publishes none (the docs say so)
    unpack: Literal["none", "zip", "tar", "python-literals-json"] = "none"
    into: str | None = None
    optional: bool = False  # large media fetched only when asked for (`emo datasets NAME --download --all`)
    description: str = ""

    @property
    def installed_name(self) -> str:
        """The file or folder this download leaves in the dataset's folder."""
        if self.into is not None:
            return self.into
        if self.unpack in ("zip", "tar"):
            for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
                if self.name.endswith(suffix):
                    return self.name[: -len(suffix)]
        return self.name


class GatedAccess(BaseModel):
    """A dataset (or part of one) that is given out on request: where to ask and what to put where."""

    model_config = ConfigDict(frozen=True)

    what: str  # "the IEMOCAP release (IEMOCAP_full_release/)"
    request_url: str
    how: str  # one sentence: the form, the agreement, who answers
    place: str  # what the dataset's folder must hold afterwards


class DefaultExtractor(BaseModel):
    """An extraction preset used when `emo extract` is given no --audio/--text/--visual."""

    model_config = ConfigDict(frozen=True)

    modality: Modality
    preset: str
    requires: str | None = None  # a file under the root the preset reads (skipped when it is absent)


# The sample-table column a modality's extractors read, to skip defaults the dataset cannot feed.
_INPUT_COLUMN: dict[str, str] = {"audio": "audio_path", "text": "text", "visual": "video_path"}


class DatasetAdapter(ABC):
    """Turns a dataset folder (or file) into a SampleSet."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_on_disk: ClassVar[str]  # shown by `emo datasets`: the files the adapter reads
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    licence: ClassVar[Licence | None] = None  # None: your own data
    remote_files: ClassVar[tuple[RemoteFile, ...]] = ()  # public downloads, in the order they are fetched
    gated: ClassVar[GatedAccess | None] = None  # what is only given out on request
    default_extraction: ClassVar[tuple[DefaultExtractor, ...]] = ()
    # The dataset's classes mapped onto emo's shared emotions (core.types.SHARED_EMOTIONS), for models trained
    # and tested across corpora (the `corpora` dataset); a class left out has no counterpart and is dropped
    # there. Empty: the dataset takes no part in cross-corpus sets.
    shared_labels: ClassVar[dict[str, str]] = {}

    def __init__(self, options: AdapterOptions | None = None, **overrides):
        self.options = options if options is not None else self.Options.parse(self.name, overrides)

    @classmethod
    def prepare(cls, location, *, download: bool = True, progress: bool = True, console=None,
                options: dict | None = None) -> Path:
        """The folder (or file) `load` reads, after downloading the public files that are missing when `download`
        allows it (emocli.datasets.download.ensure_available). `location`: a home.DatasetLocation; `options`: the
        adapter options given (a dataset made of other datasets fetches the ones they name)."""
        from emocli.datasets.download import ensure_available

        return ensure_available(cls, location, download=download, progress=progress, console=console)

    @classmethod
    def verify_download(cls, folder: Path) -> None:
        """Raise a DatasetError unless a fresh download in `folder` holds what the release holds. Adapters whose
        host publishes no checksum check the unpacked content here (file counts); the default trusts the
        checksums of `remote_files`."""

    @abstractmethod
    def load(self, root: Path) -> SampleSet:
        """Read the dataset at `root`; raise DatasetError naming the file and problem when it is malformed."""

    @classmethod
    def default_extractors(cls, sample_set: SampleSet) -> tuple[dict[str, list[str]], list[str]]:
        """The default presets this sample set can feed ({modality: [preset]}), and a note per skipped one."""
        chosen: dict[str, list[str]] = {"audio": [], "text": [], "visual": []}
        skipped: list[str] = []
        folder = sample_set.root if sample_set.root.is_dir() else sample_set.root.parent
        for default in cls.default_extraction:
            if default.requires is not None:
                if not (folder / default.requires).exists():
                    skipped.append(f"{default.modality} {default.preset}: {folder / default.requires} not found")
                    continue
            else:
                column = _INPUT_COLUMN[default.modality]
                if not sample_set.table[column].notna().any():
                    skipped.append(f"{default.modality} {default.preset}: no sample has {column}")
                    continue
            chosen[default.modality].append(default.preset)
        return chosen, skipped
