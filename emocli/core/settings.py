"""Settings from the command line and from preset files: one value parser and one preset loader for
`emo extract`, `train`, `tune` and `run`.

Values (`--set key=value`, `--option key=value`, `--grid key=v1,v2`) are read as TOML literals, so
numbers, booleans, arrays and inline tables keep their types (`1e-3`, `true`, `[1, 2]`, `{a = 1}`);
`none` or `null` unset an optional setting (None); any other bare word is a string (`adamw`,
`data/weights.pt`). Fields whose choices include the word "none" (`scheduler.name`, `normalize`) take it
back as that word.

Presets are TOML files, named (shipped in `emocli/presets/<kind>/`) or given as a path, and may
`extends = "<other preset>"`: the parent is read first and the child's tables are merged into it key
by key, so a dataset recipe only states what differs from its model's recipe.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from emocli.core.errors import ConfigError
from emocli.core.io import MAX_DEPTH, check_depth, read_text, read_toml

UNSET_WORDS = ("none", "null")


def parse_value(text: str) -> Any:
    """A TOML literal, None for none/null, else the text itself (a bare word or a path)."""
    if text.strip().lower() in UNSET_WORDS:
        return None
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise ConfigError(f"{text[:40]!r}...: nested more than {MAX_DEPTH} levels deep") from None
    return check_depth(value, None, ConfigError, where=f"{text[:40]!r}: ")


def none_word(value: Any) -> Any:
    """A pydantic before-validator for choices that include the word "none": parse_value's None is that word."""
    return "none" if value is None else value


def parse_assignment(assignment: str, what: str = "--set") -> tuple[str, Any]:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{what} {assignment!r}: expected KEY=VALUE")
    return key.strip(), parse_value(raw.strip())


def parse_assignments(assignments: Iterable[str], what: str = "--set") -> dict[str, Any]:
    """["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"}."""
    return dict(parse_assignment(assignment, what) for assignment in assignments)


def set_dotted(data: dict, key: str, value: Any, what: str = "--set") -> None:
    """data["a"]["b"] = value for key "a.b", creating tables on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what} {key}: {part!r} is a value, not a table")
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' when a known name is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------- presets


def preset_folder(kind: str) -> Traversable:
    """`emocli/presets/<kind>/` ("extract" or "train")."""
    return resources.files("emocli") / "presets" / kind


def preset_names(kind: str) -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in preset_folder(kind).iterdir() if p.name.endswith(".toml"))


def is_preset_path(choice: str) -> bool:
    return choice.endswith(".toml") or "/" in choice or "\\" in choice


def preset_source(kind: str, choice: str) -> tuple[str, str]:
    """(TOML text, where it came from) of a named preset or a preset file."""
    if is_preset_path(choice):
        path = Path(choice).expanduser()
        return read_text(path, error=ConfigError, missing="preset file not found"), str(path)
    resource = preset_folder(kind) / f"{choice}.toml"
    if not resource.is_file():
        names = preset_names(kind)
        raise ConfigError(f"unknown {kind} preset {choice!r}{did_you_mean(choice, names)}; choose one of "
                          f"{', '.join(names)}")
    return resource.read_text(encoding="utf-8"), f"emocli/presets/{kind}/{choice}.toml"


def load_preset(kind: str, choice: str, _seen: tuple[str, ...] = ()) -> tuple[dict, str]:
    """A preset's table with its `extends` chain resolved (parents first, children override key by key),
    and where it came from."""
    if choice in _seen:
        raise ConfigError(f"presets extend each other in a loop: {' -> '.join((*_seen, choice))}")
    text, source = preset_source(kind, choice)
    data = read_toml(text=text, where=source, error=ConfigError)
    parent = data.pop("extends", None)
    if parent is None:
        return data, source
    if not isinstance(parent, str):
        raise ConfigError('extends must name a preset: extends = "<name>"', path=source)
    merged, _ = load_preset(kind, parent, (*_seen, choice))
    return deep_merge(merged, data), source
