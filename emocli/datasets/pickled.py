"""Research files that circulate as pickles (CMU-MOSEI's train_valid_test.pt, NEMu's .pt/.pkl), read without
running code unless the user says they trust the file.

Unpickling calls whatever functions a file names, so a crafted file in a dataset folder would run its
payload during `emo extract`. These files hold dicts, lists, tensors and numpy arrays, so they are first
read by an unpickler that builds only those:

* a file written by `torch.save` through torch's own restricted unpickler (`torch.load(weights_only=True)`),
  with numpy arrays, numpy scalars and `argparse.Namespace` (HHMPN's preprocessing stores its settings
  as one) added to what it may build;
* a plain pickle through `RestrictedUnpickler`, Python's documented way of restricting globals
  (https://docs.python.org/3/library/pickle.html#restricting-globals), with the same list: torch's
  unpickler reads only torch files and pickle protocols up to 2.

A file that names anything else is refused with an error that names the file, what it asked for and the
risk. `allow_pickle=True` (the adapters' option `allow_pickle=true`) is the user's consent to unpickle it
fully, as the original research code does.
"""

from __future__ import annotations

import argparse
import collections
import functools
import pickle
import zipfile
from pathlib import Path
from typing import Any

from emocli.core.errors import DatasetError

# What a legacy (non-zip) torch.save file starts with: protocol 2, then torch's magic number as a long.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


@functools.cache
def _safe_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object the restricted unpicklers may build: containers and numpy data, no code."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # files written under numpy 1 or 2
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for code in "?bBhHiIlLqQefdgFDGOUS":
        kind = type(np.dtype(code))
        allowed[(kind.__module__, kind.__name__)] = kind  # numpy 2 pickles dtypes by their class
    allowed[("argparse", "Namespace")] = argparse.Namespace
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = __import__("codecs").encode  # how protocol 2 stores bytes
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Builds containers, numbers, strings and numpy arrays; refuses any other global a pickle names."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _safe_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name}")
        return allowed


def _refused(path: Path, what: str, error: BaseException) -> DatasetError:
    detail = str(error)
    marker = "Unsupported global: GLOBAL "
    if marker in detail:
        named = detail.split(marker, 1)[1].split()[0]
        asked = f"it names {named}, which is not plain data"
    else:
        asked = f"it is not plain data ({detail.strip().splitlines()[-1][:200] if detail.strip() else type(error).__name__})"
    return DatasetError(
        f"refused to unpickle the {what}: {asked}; unpickling it fully would run code stored in the file. "
        "If you trust where the file comes from, pass --option allow_pickle=true",
        path=path,
    )


def load_pickled(path: Path, what: str, allow_pickle: bool = False) -> Any:
    """The object in a torch.save file or a plain pickle, built from plain data only unless `allow_pickle`.

    Raises DatasetError naming the file: when it cannot be read, and when it needs more than plain data
    and `allow_pickle` is False (saying so and how to consent).
    """
    import torch

    is_torch = zipfile.is_zipfile(path) or _starts_with(path, _LEGACY_TORCH_MAGIC)
    if allow_pickle:
        try:
            if is_torch:
                return torch.load(path, map_location="cpu", weights_only=False)
            with open(path, "rb") as handle:
                return pickle.load(handle)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means the file is not the one expected
            raise DatasetError(f"cannot read the {what}: {error}", path=path) from None
    try:
        if is_torch:
            allowed = list(_safe_globals().items())
            with torch.serialization.safe_globals([(value, f"{module}.{name}") for (module, name), value in allowed]):
                return torch.load(path, map_location="cpu", weights_only=True)
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle).load()
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error) or is_torch:
            raise _refused(path, what, error) from None
        raise DatasetError(f"cannot read the {what}: not a pickle or torch file ({error})", path=path) from None
    except Exception as error:  # noqa: BLE001 - truncated, empty or foreign files
        raise DatasetError(f"cannot read the {what}: {error}", path=path) from None


def _starts_with(path: Path, prefix: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(prefix)) == prefix
    except OSError:
        return False
