"""A public dataset's files into its folder: resumable downloads, size and checksum checked, unpacked
atomically. What to fetch is declared by each adapter (`DatasetAdapter.remote_files`).

One file's life in the dataset's folder:
  NAME.part         the bytes received so far; the next attempt asks for the rest (an HTTP Range request)
  NAME              the whole file, renamed from NAME.part only once its size and checksum match
  .INTO.partial     an archive being unpacked; removed and redone when a run stopped half-way
  INTO              the unpacked folder, renamed from .INTO.partial once complete; the archive is then deleted
Nothing is read from a .part file or a .partial folder: adapters only see NAME and INTO.

Why not pooch, the field's standard for hash-checked downloads (and installed here, through librosa):
it restarts an interrupted download from zero (its temporary file is deleted on failure, no Range
requests) and unpacks archives straight into their final folder, so an interrupted unzip leaves a
folder that looks complete. Those are the two cases this module exists for, so it keeps its own ~200
lines over `requests` (HTTP) and rich (the progress bar).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from emocli.core.errors import DatasetError
from emocli.datasets.base import DatasetAdapter, RemoteFile
from emocli.datasets.home import DatasetLocation, root_variable

PART_SUFFIX = ".part"
LOCK_NAME = ".emo-download.lock"  # hidden: adapters and foreign_entries skip dot-names
# urllib3 drops a partly read chunk when the connection breaks: a small chunk keeps what arrived.
CHUNK_BYTES = 1 << 16
USER_AGENT = "emocli-dataset-download"


def staging_name(installed_name: str) -> str:
    """The hidden name an unpack writes to before it is renamed into place (adapters skip dot-names)."""
    return f".{installed_name}.partial"


def human_size(size: int) -> str:
    from rich.filesize import decimal

    return decimal(size)


def describe_size(file: RemoteFile) -> str:
    return human_size(file.size) if file.size is not None else "size not published"


def describe_files(files: Sequence[RemoteFile]) -> str:
    """'3 files, 1.5 MB' ('..., 1.5 MB and one of unpublished size' where a host gives none)."""
    total = sum(f.size for f in files if f.size is not None)
    unknown = sum(f.size is None for f in files)
    size = human_size(total) if unknown < len(files) else "size not published"
    if unknown and unknown < len(files):
        size += f" and {unknown} of unpublished size"
    return f"{len(files)} file{'s' if len(files) != 1 else ''}, {size}"


def missing_files(files: Iterable[RemoteFile], folder: Path, include_optional: bool = False) -> list[RemoteFile]:
    """The declared files whose file or unpacked folder is not yet in `folder`."""
    return [
        f for f in files
        if (include_optional or not f.optional) and not (folder / f.installed_name).exists()
    ]  # fmt: skip


# Files up to this size are hashed whenever a dataset is located (MELD's CSVs: 1.5 MB, a few milliseconds);
# larger ones are checked by their size alone there (their checksum was checked when downloaded).
HASHED_IN_PLACE = 64 * 2**20


def mismatch(file: RemoteFile, folder: Path) -> str | None:
    """Why `file`, present in `folder` under its name, is not the published file: another size (a copy cut
    short), another checksum, not a regular file. None when it matches, is absent, or was unpacked (the
    archive is gone; its folder is checked by the adapter)."""
    import stat

    if file.unpack != "none":
        return None
    path = folder / file.installed_name
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, RuntimeError) as error:
        return f"cannot be read ({getattr(error, 'strerror', None) or error})"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if file.size is not None and info.st_size != file.size:
        return f"is {info.st_size:,} bytes where the published file has {file.size:,} (a copy cut short, or another version)"
    if file.checksum is not None and info.st_size <= HASHED_IN_PLACE:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, file.checksum.algorithm).hexdigest()
        if digest != file.checksum.value.lower():
            return f"has {file.checksum.algorithm} {digest[:16]}..., not the published file's {file.checksum.value[:16]}..."
    return None


def foreign_entries(files: Iterable[RemoteFile], folder: Path) -> list[str]:
    """Entries of `folder` that no download put there: the user's own copy of the data, in its own
    layout, which emo reads as it is and never downloads into. Hidden entries do not count."""
    if not folder.is_dir():
        return []
    owned = set()
    for f in files:
        owned |= {f.name, f.name + PART_SUFFIX, f.installed_name, staging_name(f.installed_name)}
    return sorted(p.name for p in folder.iterdir() if p.name not in owned and not p.name.startswith("."))


def manual_instructions(files: Iterable[RemoteFile], folder: Path) -> str:
    """What to download from where and where to put it, one clause per file."""
    clauses = []
    for f in files:
        check = f", {f.checksum.algorithm} {f.checksum.value}" if f.checksum else ""
        unpacked = f", unpacked into {folder / f.installed_name}" if f.unpack in ("zip", "tar") else ""
        converted = f", converted to {folder / f.installed_name}" if f.unpack == "python-literals-json" else ""
        clauses.append(f"{f.url} -> {folder / f.name} ({describe_size(f)}{check}){unpacked}{converted}")
    return "; ".join(clauses)


def _reason(error: Exception) -> str:
    """A short cause for a failed request (requests' own messages span several lines of pool details)."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection dropped"
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.ConnectionError):
        return "no connection"
    return type(error).__name__


def _server_size(response, offset: int) -> int | None:
    """The whole file's size as the response gives it (Content-Range's total, else offset + Content-Length)."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = response.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() and response.status_code != 416 else None


def _transfer(session, file: RemoteFile, part: Path, timeout: float, bar, task) -> int | None:
    """Append what the server sends after the bytes already in `part` (or start over when it ignores
    the range); returns the whole file's size as the server gives it. Raises requests' exceptions when the
    connection fails or drops, and a DatasetError when the server's file is not the declared size (a retry
    cannot help)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(file.url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code != 416:
            response.raise_for_status()
        resumed = offset > 0 and response.status_code == 206
        server_size = _server_size(response, offset if resumed or response.status_code == 416 else 0)
        if server_size is not None and file.size is not None and server_size != file.size:
            part.unlink(missing_ok=True)
            raise DatasetError(
                f"{file.url} is {server_size} bytes, {file.size} declared: not the file emo knows; "
                "nothing was kept",
                path=part.parent / file.name,
            )
        if response.status_code == 416:  # nothing after `offset`: the part already holds the whole file
            return server_size
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()  # a range other than the one asked for: start over on the next attempt
            return None
        bar.update(task, completed=offset if resumed else 0, total=file.size or server_size)
        with open(part, "ab" if resumed else "wb") as out:
            for chunk in response.iter_content(CHUNK_BYTES):
                out.write(chunk)
                bar.advance(task, len(chunk))
        return server_size


def verify(path: Path, file: RemoteFile) -> None:
    """Delete `path` and raise a DatasetError unless its size and checksum are the declared ones (where the
    host publishes them)."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        path.unlink()
        raise DatasetError(
            f"{size} bytes received, {file.size} expected from {file.url}; the download was discarded", path=path
        )
    if file.checksum is None:
        return
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, file.checksum.algorithm).hexdigest()
    if digest != file.checksum.value.lower():
        path.unlink()
        raise DatasetError(
            f"{file.checksum.algorithm} {digest} does not match {file.checksum.value} ({file.checksum.source}) "
            f"for {file.url}; the download was discarded: run again, or download it by hand and compare",
            path=path,
        )


def fetch(
    file: RemoteFile,
    folder: Path,
    *,
    progress: bool = True,
    attempts: int = 3,
    timeout: float = 30.0,
    retry_wait: float = 1.0,
    console=None,
) -> Path:
    """Download `file` into `folder` (resuming a .part left by an earlier run), check it and rename it
    into place; returns its path. A DatasetError says what to fetch by hand when it cannot be done."""
    import requests
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    destination = folder / file.name
    if destination.exists():  # only ever renamed into place after its check
        return destination
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (file.name + PART_SUFFIX)
    last_error: Exception | None = None
    columns = (
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()
    )
    with requests.Session() as session, Progress(*columns, console=console, disable=not progress) as bar:
        session.headers["User-Agent"] = USER_AGENT
        task = bar.add_task(file.name, total=file.size)
        # Where the host publishes no size, the size the server announces is what a complete file has; a
        # transfer that ended without an error and without an announced size is taken as complete.
        expected, complete = file.size, False
        for attempt in range(attempts):
            received = part.stat().st_size if part.exists() else 0
            if expected is not None and received > expected:
                part.unlink()
            elif complete or (expected is not None and received == expected):
                break
            try:
                announced = _transfer(session, file, part, timeout, bar, task)
                expected = expected if expected is not None else announced
                complete = expected is None and part.exists()
            except requests.RequestException as error:
                last_error = error
                grew = part.exists() and part.stat().st_size > received
                if not grew and attempt + 1 < attempts:
                    time.sleep(retry_wait * (attempt + 1))
    received = part.stat().st_size if part.exists() else 0
    if not complete and (expected is None or received < expected):
        sent = f"{received} of {expected}" if expected is not None else f"{received}"
        why = _reason(last_error) if last_error is not None else f"{sent} bytes sent"
        kept = f"; the {received} bytes received are kept in {part} and the next run resumes" if received else ""
        raise DatasetError(
            f"cannot download {file.url} ({why}){kept}; or download it by hand: "
            f"{manual_instructions([file], folder)}",
            path=destination,
        )
    verify(part, file)
    os.replace(part, destination)
    return destination


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _untar(archive: Path, staging: Path) -> None:
    """Unpack a tar, then the tars found inside it, each in its own folder (MELD packs one per split)."""
    with tarfile.open(archive) as outer:
        outer.extractall(staging, filter="data")  # "data": no absolute paths, links out or device files
    inner = [p for p in staging.rglob("*") if p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar"))]
    for nested in inner:
        with tarfile.open(nested) as tar:
            tar.extractall(nested.parent, filter="data")
        nested.unlink()


def _literals_to_json(source: Path, target: Path) -> None:
    """A Python file of `name = <literal>` assignments as one JSON object. ast.literal_eval accepts only
    literals (strings, numbers, lists, dicts, ...): the downloaded file is parsed, never run or imported."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except (SyntaxError, UnicodeDecodeError) as error:
        raise DatasetError(f"not a Python file of literals: {error}", path=source) from None
    values = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise DatasetError(f"line {node.lineno}: only `name = literal` assignments are read", path=source)
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise DatasetError(f"line {node.lineno}: {node.targets[0].id} is not a literal", path=source) from None
    target.write_text(json.dumps(values), encoding="utf-8")


def unpack(file: RemoteFile, archive: Path, folder: Path) -> Path:
    """Unpack (or convert) a verified download into `folder/file.installed_name`, through a hidden staging
    name renamed into place at the end, so a run stopped half-way leaves nothing an adapter reads; a
    staging entry left by such a run is removed first. The archive is deleted once unpacked."""
    target = folder / file.installed_name
    staging = folder / staging_name(file.installed_name)
    _remove(staging)
    try:
        if file.unpack == "zip":
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(staging)  # zipfile drops absolute paths and ".." from member names
        elif file.unpack == "tar":
            _untar(archive, staging)
        else:
            _literals_to_json(archive, staging)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        _remove(staging)
        archive.unlink()
        raise DatasetError(f"cannot unpack ({error}); the archive was deleted: run again", path=archive) from None
    except Exception:
        _remove(staging)
        raise
    os.replace(staging, target)
    archive.unlink()
    return target


def install(files: Sequence[RemoteFile], folder: Path, *, progress: bool = True, console=None, **fetch_options) -> None:
    """Fetch, check and unpack each file that is not yet in place (what an earlier run finished is kept).
    One process at a time per folder (a lock file in it): the shards of a cluster array job started
    together wait for the first one's download instead of writing into the same .part."""
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / LOCK_NAME):
        for file in files:
            if (folder / file.installed_name).exists():
                continue
            downloaded = fetch(file, folder, progress=progress, console=console, **fetch_options)
            if file.unpack != "none":
                if console is not None:
                    console.print(f"unpacking {downloaded.name} into {folder / file.installed_name}", highlight=False)
                unpack(file, downloaded, folder)


def not_found_message(adapter: type[DatasetAdapter], location: DatasetLocation) -> str:
    """Why the dataset is not there, where it was looked for, and how to get it there, in one line."""
    elsewhere = f"give --root PATH, or set ${root_variable(adapter.name)}"
    if adapter.gated is not None:
        how = f"{gated_message(adapter, location.path)} (or {elsewhere})"
    else:
        place = f"put it in {location.path}, or " if location.origin != "--root" else ""
        how = f"{adapter.name} reads: {adapter.needs_on_disk}; {place}{elsewhere}"
    return f"{adapter.name} is not here ({location.describe()}); {how}"


def gated_message(adapter: type[DatasetAdapter], folder: Path) -> str:
    gated = adapter.gated
    return f"{gated.what}: given out on request ({gated.request_url}): {gated.how}; then put {gated.place} in {folder}"


def ensure_available(
    adapter: type[DatasetAdapter],
    location: DatasetLocation,
    *,
    download: bool = True,
    progress: bool = True,
    console=None,
    **fetch_options,
) -> Path:
    """The dataset's folder (or file), after downloading its public files when they are missing and
    `download` allows it. A folder holding anything a download did not put there is the user's own copy
    and is returned as it is (the adapter then says what, if anything, is wrong with it)."""
    folder = location.path
    if folder.is_file():
        return folder
    required = [f for f in adapter.remote_files if not f.optional]
    missing = missing_files(required, folder)
    own = bool(foreign_entries(adapter.remote_files, folder))
    for file in required:
        problem = mismatch(file, folder)
        if problem is None:
            continue
        if not own:  # a folder emo fills: the file is not in place, and is never read as if it were
            raise DatasetError(f"{problem}; delete it and run again to download the published file, or copy it "
                               "whole", path=folder / file.installed_name)
        if console is not None:  # the user's own copy is read as it is, but not without a word
            console.print(f"[yellow]warning:[/] {folder / file.installed_name} {problem}; it is read as it is",
                          highlight=False, soft_wrap=True)
    if own or (required and not missing):
        return folder
    if not required:
        raise DatasetError(not_found_message(adapter, location), path=folder)
    if not download:
        raise DatasetError(
            f"{adapter.name} is not here ({location.describe()}); run without --no-download to fetch it, "
            f"or download it by hand: {manual_instructions(missing, folder)}",
            path=folder,
        )
    if console is not None:
        licence = f" ({adapter.licence.name}: {adapter.licence.meaning})" if adapter.licence else ""
        console.print(
            f"{adapter.name}: not found at {folder} ({location.describe()}); downloading "
            f"{describe_files(missing)}{licence}",
            highlight=False,
            soft_wrap=True,
        )
    install_dataset(adapter, missing, folder, progress=progress, console=console, **fetch_options)
    return folder


def install_dataset(adapter: type[DatasetAdapter], files: Sequence[RemoteFile], folder: Path, **options) -> None:
    """`install`, then the adapter's check of what arrived: a download that does not hold what the release
    holds is removed again, so it is never taken to be in place."""
    install(files, folder, **options)
    try:
        adapter.verify_download(folder)
    except DatasetError:
        for file in files:
            _remove(folder / file.installed_name)
        raise
