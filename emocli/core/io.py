"""Files: cheap identities of inputs (what the feature store's cache is keyed on), reading files emo did not
write, and writing outputs.

Every file emo reads from a folder someone else made (a run or model folder, a bundle, a hub snapshot, a
manifest, a recipe, a preset) goes through `read_bytes` (or `read_json`, `read_jsonl`, `read_toml` built
on it): only a regular file is opened (a FIFO would block for ever, /dev/zero never ends), never more than a
stated size is read, and structures nested deeper than `MAX_DEPTH` are refused before a recursive
reader (pydantic, pyarrow, the trackers' flattening) meets them. Each problem is one EmoError naming the
file.

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
import json
import os
import re
import secrets
import stat
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


# ------------------------------------------------------------------------------------------- inputs

# Run and model folders hold kilobytes of JSON: 16 MiB is far above any file emo writes there (a metrics
# log of thousands of epochs included) and far below what would exhaust memory.
JSON_LIMIT = 16 * 2**20
# Manifests, recipes and subtitle files written by people: large, but not unbounded.
TEXT_LIMIT = 256 * 2**20
# No file emo reads nests deeper than a few levels (a recipe's stages, a spec's params); Python's own
# readers recurse once per level and stop with a RecursionError near 1000.
MAX_DEPTH = 64

_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def _not_regular(mode: int) -> str | None:
    """What a file that is not a regular file is ("a named pipe (FIFO)"), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")


def regular_file(path: str | os.PathLike, error: type[EmoError] = EmoError, missing: str = "no such file") -> int:
    """The size of `path` (links followed) when it is a regular file; `error` naming it otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(missing, path=path) from None
    except (OSError, RuntimeError, ValueError) as failure:  # ELOOP, EACCES, a NUL in the name
        raise error(f"cannot read ({getattr(failure, 'strerror', None) or failure})", path=path) from None
    kind = _not_regular(info.st_mode)
    if kind is not None:
        raise error(f"is {kind}, not a regular file; emo reads only regular files", path=path)
    return info.st_size


def read_bytes(path: str | os.PathLike, limit: int = JSON_LIMIT, error: type[EmoError] = EmoError,
               missing: str = "no such file") -> bytes:
    """The content of a regular file of at most `limit` bytes. Opened without blocking and checked again
    once open (a file swapped for a FIFO in between is still refused); `error` names the file otherwise."""
    regular_file(path, error, missing)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(missing, path=path) from None
    except OSError as failure:
        raise error(f"cannot read ({failure.strerror or failure})", path=path) from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        kind = _not_regular(info.st_mode)
        if kind is not None:
            raise error(f"is {kind}, not a regular file; emo reads only regular files", path=path)
        if info.st_size > limit:
            raise error(f"is {info.st_size:,} bytes; emo reads at most {limit:,} from such a file", path=path)
        try:
            data = handle.read(limit + 1)
        except OSError as failure:
            raise error(f"cannot read ({failure.strerror or failure})", path=path) from None
    if len(data) > limit:  # grew while read
        raise error(f"is more than {limit:,} bytes; emo reads at most that from such a file", path=path)
    return data


def read_text(path: str | os.PathLike, limit: int = JSON_LIMIT, error: type[EmoError] = EmoError,
              missing: str = "no such file") -> str:
    """A UTF-8 text file (see read_bytes); a byte that is not UTF-8 is named by its offset and line."""
    data = read_bytes(path, limit, error, missing)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as failure:
        line = data[: failure.start].count(b"\n") + 1
        raise error(f"cannot read: not UTF-8 (byte offset {failure.start}, line {line})", path=path) from None


def nesting_depth(data: Any) -> int:
    """How deeply lists and dicts nest in `data` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def check_depth(data: Any, path: str | os.PathLike | None, error: type[EmoError] = EmoError,
                depth: int = MAX_DEPTH, where: str = "") -> Any:
    """`data` when it nests at most `depth` levels; `error` naming the file (and `where`) otherwise."""
    if nesting_depth(data) > depth:
        raise error(f"{where}nested more than {depth} levels deep; no file emo reads is", path=path)
    return data


def parse_json(text: str, path: str | os.PathLike | None = None, error: type[EmoError] = EmoError,
               depth: int = MAX_DEPTH, where: str = "") -> Any:
    """JSON text as data, at most `depth` levels deep; `error` naming the file (and `where`, "line 3: ")."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as failure:
        raise error(f"{where}not valid JSON ({failure})", path=path) from None
    except RecursionError:
        raise error(f"{where}nested more than {depth} levels deep; no file emo reads is", path=path) from None
    return check_depth(data, path, error, depth, where)


_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def json_kind(kind: type, article: bool = False) -> str:
    """"object", "an array", ... : a JSON value's kind as the JSON specification names it."""
    name = _JSON_KINDS.get(kind)
    if name is None:
        return "null" if kind is type(None) else "value"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}" if article else name


def read_json(path: str | os.PathLike, expect: type = object, *, limit: int = JSON_LIMIT,
              error: type[EmoError] = EmoError, missing: str = "no such file") -> Any:
    """A JSON file from a folder emo did not write (see read_bytes and parse_json); with `expect` (dict,
    list) the top-level value must be of that kind."""
    data = parse_json(read_text(path, limit, error, missing), path, error)
    if not isinstance(data, expect):
        raise error(f"expected a JSON {json_kind(expect)}, found {json_kind(type(data), article=True)}", path=path)
    return data


def read_toml(path: str | os.PathLike | None = None, *, text: str | None = None, limit: int = JSON_LIMIT,
              error: type[EmoError] = EmoError, where: str | os.PathLike | None = None,
              missing: str = "no such file") -> dict[str, Any]:
    """A TOML document (the file `path`, or `text` read from `where`) as data, at most MAX_DEPTH deep."""
    import tomllib

    source = where if where is not None else path
    if text is None:
        text = read_text(path, limit, error, missing)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as failure:
        raise error(f"not valid TOML: {failure}", path=source) from None
    except RecursionError:
        raise error(f"nested more than {MAX_DEPTH} levels deep; no file emo reads is", path=source) from None
    return check_depth(data, source, error)


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
    # Its own temporary per writer: two processes writing the same output (two `emo predict -o x.csv` at
    # once) each rename a whole file into place, never one the other is still writing.
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
        _clear_leftovers(path)
    except BaseException as error:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        cause = os_error_in(error) if isinstance(error, Exception) else None
        if cause is None:
            raise
        raise output_error(path, cause) from None


def _clear_leftovers(path: Path) -> None:
    """Remove the temporaries of `path` that writers killed before their rename left (`.NAME.<pid>-<token>.tmp`
    of a process no longer running here); a live writer's is its own business."""
    import glob

    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*-*.tmp"):
        pid = leftover.name[len(path.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            with suppress(OSError):
                leftover.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        return True
    return True


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


def replace_folder(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Put a completely written folder `staging` (beside `target`) in `target`'s place: an existing
    `target` (the user allowed --overwrite) is moved aside first and deleted only once the new folder is in
    place, so a failure leaves one whole folder, old or new."""
    import shutil

    staging, target = Path(staging), Path(target)
    try:
        if target.exists():
            old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except OSError as error:
        raise output_error(target, error, "cannot put the folder in place") from None
    return target


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
