"""Names and paths that come from the user or from data: one check for each, shared by every command.

- A *name* (a run name, a bundle head, a feature-set or preset name) becomes one component of a path:
  `check_name` refuses separators, `..`, hidden and control characters, so a name can never point
  elsewhere.
- A path *named by data* (a bundle's head unit, a manifest's media) must stay inside the folder that names
  it: `inside` checks that after resolving links, so neither `../x`, an absolute path nor a link leads out.
- An *output* never destroys: `check_output_folder` refuses a non-empty folder unless the user said
  `--overwrite`, and never accepts the folder of an input (nor one that holds or lies in it);
  `check_not_input` refuses an output file that is one of the inputs.
- `resolved` is `Path.resolve` that reports a symbolic-link loop as None instead of raising, for scans of
  folders someone else filled.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from emocli.core.errors import ConfigError, EmoError, OutputError

# A name ends up inside longer file names (`<model>-<dataset>-<name>`, `.<name>.partial`): 100 characters
# leave room under the usual 255-byte limit of one path component.
MAX_NAME = 100


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def check_name(value: str, what: str, error: type[EmoError] = ConfigError) -> str:
    """`value` when it is a plain name (one path component, visible characters, not hidden); `error`
    saying why not otherwise. `what` names the option ("--name", "head")."""
    problem = None
    if not value or not value.strip():
        problem = "is empty"
    elif value in (".", "..") or "/" in value or "\\" in value or (os.altsep and os.altsep in value):
        problem = "is a path; give a name (no '/', '\\' or '..')"
    elif _has_control(value) or "\x00" in value:
        problem = "holds control or invisible characters"
    elif value.startswith((".", "-", "~")):
        problem = "starts with '.', '-' or '~'; give a name that does not"
    elif value != value.strip():
        problem = "starts or ends with spaces"
    elif len(value) > MAX_NAME:
        problem = f"is {len(value)} characters long; a name has at most {MAX_NAME}"
    if problem is not None:
        raise error(f"{what} {value!r} {problem}")
    return value


def resolved(path: str | os.PathLike) -> Path | None:
    """The absolute path with links followed; None where the links loop (Python raises RuntimeError there)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return None


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` is `folder` or lies under it, both resolved (links followed)."""
    path, folder = resolved(path), resolved(folder)
    return path is not None and folder is not None and path.is_relative_to(folder)


def inside(folder: str | os.PathLike, relative: str, what: str, source: str | os.PathLike | None = None,
           error: type[EmoError] = ConfigError) -> Path:
    """`folder / relative`, when `relative` is a relative path that stays inside `folder` after resolving
    `..` and links; `error` naming `source` (the file that gave the path) otherwise."""
    if not relative or Path(relative).is_absolute() or relative.startswith("~") or "\x00" in relative:
        raise error(f"{what} {relative!r} is not a path relative to {folder}", path=source)
    candidate = Path(folder) / relative
    if ".." in Path(relative).parts or not is_within(candidate, folder):
        raise error(f"{what} {relative!r} leads outside {folder}; emo reads only what lies inside it", path=source)
    return candidate


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], option: str = "--output") -> None:
    """An output file that is one of the inputs (the same file by any path or link) is refused."""
    output = Path(output)
    target = resolved(output)
    for given in inputs:
        given = Path(given)
        same = target is not None and target == resolved(given)
        if not same and output.exists() and given.exists():
            try:
                same = os.path.samefile(output, given)
            except OSError:
                same = False
        if same:
            raise ConfigError(f"{option} {output} is one of the inputs ({given}); write to another file")


def check_output_folder(out: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike] = (),
                        option: str = "--out") -> Path:
    """Before any work: `out` may be written as a whole new folder. Refused when it is the folder of an
    input, holds one or lies inside an input folder (replacing it would destroy what is read), when it
    is a file, or when it is a folder with anything in it and `overwrite` is not given."""
    from emocli.core.io import check_writable

    out = Path(out)
    target = resolved(out)
    if target is None:
        raise OutputError("is a symbolic link that loops", path=out)
    for given in inputs:
        given = Path(given)
        source = resolved(given)
        if source is None:
            continue
        folder = source if source.is_dir() else source.parent
        holds = source.is_relative_to(target)  # out is the input's folder, or above it
        within = source.is_dir() and target.is_relative_to(folder)  # out inside an input folder
        if holds or within or target == folder:
            raise ConfigError(f"{option} {out} is, holds or lies in the folder of an input ({given}); replacing it "
                              "would destroy what is read: choose a new folder")
    if out.exists() and not out.is_dir():
        raise OutputError("is a file, not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError("is not empty; give --overwrite to replace it, or a new folder", path=out)
    return check_writable(out, folder=True)
