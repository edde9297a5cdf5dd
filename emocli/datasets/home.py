"""Where a dataset's folder is: the data home.

The first of these that is given wins:
  1. `--root DIR` on the command line;
  2. `$EMO_<NAME>_ROOT` (e.g. EMO_MELD_ROOT), one dataset's folder;
  3. `$EMO_DATA/<name>`, a folder holding one sub-folder per dataset;
  4. the per-user data folder, `platformdirs.user_data_dir("emo")/datasets/<name>`
     (`~/.local/share/emo/datasets/<name>` on Linux).
A later source is never tried when an earlier one is given: a wrong `$EMO_MELD_ROOT` is reported as
wrong, not silently replaced by another copy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_VARIABLE = "EMO_DATA"
USER_FOLDER = "the per-user data folder"


def root_variable(dataset: str) -> str:
    """The environment variable that names one dataset's folder: EMO_RAVDESS_ROOT, ..."""
    return f"EMO_{re.sub(r'[^A-Za-z0-9]', '_', dataset).upper()}_ROOT"


def data_home(environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The folder of dataset folders and where it comes from ("$EMO_DATA" or the per-user data folder)."""
    environ = os.environ if environ is None else environ
    if environ.get(DATA_VARIABLE):
        return Path(os.path.abspath(Path(environ[DATA_VARIABLE]).expanduser())), f"${DATA_VARIABLE}"
    from platformdirs import user_data_dir

    return Path(user_data_dir("emo", appauthor=False)) / "datasets", USER_FOLDER


@dataclass(frozen=True)
class DatasetLocation:
    """A dataset's folder, which source named it, and the earlier sources that were not given."""

    dataset: str
    path: Path
    origin: str  # "--root", "$EMO_MELD_ROOT", "$EMO_DATA" or the per-user data folder
    not_given: tuple[str, ...]

    def describe(self) -> str:
        """'root from $EMO_DATA (--root not given, $EMO_MELD_ROOT not set)'."""
        unused = ", ".join(f"{s} not given" if s.startswith("--") else f"{s} not set" for s in self.not_given)
        return f"root from {self.origin}" + (f" ({unused})" if unused else "")


def locate_dataset(
    dataset: str, root: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> DatasetLocation:
    """The folder (or file) `dataset` is read from; it need not exist (see emocli.datasets.download)."""
    environ = os.environ if environ is None else environ
    variable = root_variable(dataset)
    if root is not None:
        return DatasetLocation(dataset, Path(os.path.abspath(Path(root).expanduser())), "--root", ())
    if environ.get(variable):
        path = Path(os.path.abspath(Path(environ[variable]).expanduser()))
        return DatasetLocation(dataset, path, f"${variable}", ("--root",))
    home, origin = data_home(environ)
    not_given = ("--root", f"${variable}") + ((f"${DATA_VARIABLE}",) if origin == USER_FOLDER else ())
    return DatasetLocation(dataset, home / dataset, origin, not_given)
