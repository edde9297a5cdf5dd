"""Files: cheap identities of inputs (what the feature store's cache is keyed on), and writing outputs.

Every file emo writes goes through `atomic_path` (or the helpers built on it): it is written under a
hidden temporary name beside its place and renamed there only once complete, so a reader (or a resumed
run) never sees half a file; a failed write removes the temporary; and an operating-system error
(permission, full disk, read-only file system) becomes one `OutputError` naming the file and the reason,
instead of a traceback from whichever library was writing. `check_writable` finds those problems before
any work is done.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from emocli.core.errors import EmoError, OutputError


def file_fingerprint(path: str | os.PathLike) -> str:
    """Cheap identity of a file's content: size and modification time (as audinterface does not)."""
    stat = os.stat(path)
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ outputs

# Rust and C++ writers (safetensors) report an OS error only in their message: "... (os error 28)".
_OS_ERROR_CODE = re.compile(r"os error (\d+)")


def os_error_in(error: BaseException) -> OSError | None:
    """The operating-system error behind `error`: itself, its cause or context, or the errno a native
    library wrote into its message; None when it is not one (or already one of emo's errors)."""
    if isinstance(error, EmoError):
        return None
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    match = _OS_ERROR_CODE.search(str(error))
    if match:
        code = int(match.group(1))
        return OSError(code, os.strerror(code))
    return None


def output_error(path: str | os.PathLike, error: OSError, action: str = "cannot write") -> OutputError:
    """One line: the file, what failed, and the operating system's reason ("No space left on device")."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason += "; free some space and run the same command again"
    return OutputError(f"{action} ({reason})", path=path)


def make_folder(path: str | os.PathLike) -> Path:
    """mkdir -p, with an OutputError naming the folder when it cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(path, error, "cannot create the folder") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a file name; renamed over `path` when the
    block completes, removed when it raises. OS errors (also those a native library reports in its
    message) become one OutputError naming `path`."""
    path = Path(path)
    make_folder(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        cause = os_error_in(error) if isinstance(error, Exception) else None
        if cause is None:
            raise
        raise output_error(path, cause) from None


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **options: Any) -> Iterator[IO]:
    """`open` for writing, atomically (see atomic_path): `with atomic_open(p, "wb") as f: torch.save(x, f)`.
    Libraries that write through a Python file object raise the real OSError (torch.save to a path
    raises a bare "unexpected pos" RuntimeError on a full disk instead)."""
    with atomic_path(path) as temporary, open(temporary, mode, **options) as handle:
        yield handle


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """`writer(temporary_path)` (a library's save function), atomically (see atomic_path)."""
    with atomic_path(path) as temporary:
        writer(temporary)
    return Path(path)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append to a log (not atomic: a line cut short by a full disk is what readers of logs must skip)."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise output_error(path, error) from None


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail now, before any work, when `path` (a file to write, or a folder to write into with
    folder=True) could not be written later: an existing `path` must be a file (a folder), and its
    nearest existing ancestor a folder in which a file can be created. Creates nothing that stays."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError("is a file, not a folder", path=path)
        if not folder and path.is_dir():
            raise OutputError("is a folder; give a file name", path=path)
    ancestor = path if folder and path.is_dir() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write here: {ancestor} is a file, not a folder", path=path)
    try:
        handle, probe = tempfile.mkstemp(dir=ancestor, prefix=".emo-write-check-")
    except OSError as error:
        raise output_error(path, error, "cannot write here") from None
    os.close(handle)
    with suppress(OSError):
        os.unlink(probe)
    return path
