"""Dataset adapters, looked up by name. Modules are imported only when an adapter is used."""

from __future__ import annotations

from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.core.lazy import import_object
from emocli.core.paths import resolved

# name -> "module:Class"; the single list `emo datasets`, `emo extract --dataset` and the tests use.
ADAPTERS: dict[str, str] = {
    "ravdess": "emocli.datasets.ravdess:RavdessAdapter",
    "emodb": "emocli.datasets.emodb:EmodbAdapter",
    "tess": "emocli.datasets.tess:TessAdapter",
    "urdu": "emocli.datasets.urdu:UrduAdapter",
    "nemo": "emocli.datasets.nemo:NemoAdapter",
    "emovo": "emocli.datasets.emovo:EmovoAdapter",
    "ased": "emocli.datasets.ased:AsedAdapter",
    "casia": "emocli.datasets.casia:CasiaAdapter",
    "turev": "emocli.datasets.turev:TurevAdapter",
    "fer2013": "emocli.datasets.fer2013:Fer2013Adapter",
    "ckplus": "emocli.datasets.ckplus:CkplusAdapter",
    "meld": "emocli.datasets.meld:MeldAdapter",
    "iemocap": "emocli.datasets.iemocap:IemocapAdapter",
    "mosei": "emocli.datasets.mosei:MoseiAdapter",
    "nemu": "emocli.datasets.nemu:NemuAdapter",
    "manifest": "emocli.datasets.manifest:ManifestAdapter",
    "corpora": "emocli.datasets.corpora:CorporaAdapter",
}


def adapter_class(name: str):
    if name not in ADAPTERS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(ADAPTERS)}")
    return import_object(ADAPTERS[name])


def load_dataset(name: str, root: str | Path, **options):
    """Load dataset `name` from `root` with adapter options; returns a SampleSet."""
    adapter = adapter_class(name)(**options)
    folder = resolved(Path(root).expanduser())
    if folder is None:
        raise DatasetError("is a symbolic link that loops", path=root)
    return adapter.load(folder)
