"""Named extractor presets: small TOML files a user can print, copy, edit and pass back as a path.

A preset (emocli/presets/extract/<name>.toml)::

    extractor = "opensmile"     # a name in emocli.features.EXTRACTORS, or "package.module:Class"
    description = "openSMILE ComParE_2016 functionals: one 6373-d vector per clip"

    [params]                    # the extractor's Params; "{root}" in a string is the dataset root
    feature_set = "ComParE_2016"

Wherever an extractor is chosen (`emo extract --audio X`), X is a preset name, a path to a preset
file, or an extractor name (its default parameters). Parameters are overridden with assignments
"X.param=value", the value read as TOML ("20", "2.45", "true", '"text"'), bare words as strings and
"none" as None.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocli.core.errors import ConfigError

if TYPE_CHECKING:
    from emocli.features.base import Extractor, ExtractorParams

ROOT_PLACEHOLDER = "{root}"


def _preset_dir() -> Traversable:
    return resources.files("emocli") / "presets" / "extract"


@dataclass(frozen=True)
class Preset:
    name: str
    extractor: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it was read from, for error messages


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def _is_path(choice: str) -> bool:
    return choice.endswith(".toml") or "/" in choice or "\\" in choice


def preset_text(choice: str) -> str:
    """The TOML of a named preset (or preset file), as `emo extract --preset NAME --show` prints it."""
    if _is_path(choice):
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ConfigError("preset file not found", path=path)
        return path.read_text(encoding="utf-8")
    resource = _preset_dir() / f"{choice}.toml"
    if not resource.is_file():
        raise ConfigError(f"unknown preset {choice!r}; presets: {', '.join(preset_names())}")
    return resource.read_text(encoding="utf-8")


def load_preset(choice: str) -> Preset:
    """A preset by name or path; raises ConfigError naming the file for malformed TOML or keys."""
    source = str(Path(choice).expanduser()) if _is_path(choice) else f"emocli/presets/extract/{choice}.toml"
    try:
        data = tomllib.loads(preset_text(choice))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}", path=source) from None
    unknown = set(data) - {"extractor", "description", "params"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}; a preset has extractor, description, [params]", path=source)
    if not isinstance(data.get("extractor"), str):
        raise ConfigError('a preset needs extractor = "<name>"', path=source)
    if not isinstance(data.get("params", {}), dict):
        raise ConfigError("params must be a table ([params])", path=source)
    name = Path(choice).stem if _is_path(choice) else choice
    return Preset(name, data["extractor"], data.get("description", ""), data.get("params", {}), source)


def extractor_class(name: str) -> type[Extractor]:
    """A registry extractor by name, or any Extractor subclass as "package.module:Class"."""
    from emocli.core.lazy import import_object
    from emocli.features import EXTRACTORS
    from emocli.features import extractor_class as registry_class
    from emocli.features.base import Extractor

    if name in EXTRACTORS or ":" not in name:
        return registry_class(name)
    try:
        kind = import_object(name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot import extractor {name!r}: {error}") from None
    if not (isinstance(kind, type) and issubclass(kind, Extractor)):
        raise ConfigError(f"{name!r} is not an Extractor subclass")
    return kind


def parse_value(raw: str) -> Any:
    """A command-line value read as TOML, so numbers, booleans and lists keep their types."""
    if raw.strip().lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word or path


def parse_assignments(assignments: Iterable[str], what: str = "--set") -> dict[str, Any]:
    """["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"}."""
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {assignment!r}: expected KEY=VALUE")
        parsed[key.strip()] = parse_value(raw)
    return parsed


def split_overrides(assignments: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Group "--set CHOICE.param=value" assignments by CHOICE (a preset, file stem or extractor name)."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(assignments).items():
        choice, dot, param = key.rpartition(".")
        if not dot or not choice:
            raise ConfigError(f"--set {key}=...: expected NAME.PARAM=VALUE, e.g. mfcc.n_mfcc=20")
        grouped.setdefault(choice, {})[param] = value
    return grouped


def choice_label(choice: str) -> str:
    """How `--set` refers to an extractor choice: preset/extractor name, or a preset file's stem."""
    return Path(choice).stem if _is_path(choice) else choice


def _fill_root(value: Any, root: Path | None, source: str) -> Any:
    if isinstance(value, str) and ROOT_PLACEHOLDER in value:
        if root is None:
            raise ConfigError(f"{value!r} refers to {ROOT_PLACEHOLDER}, but no dataset root is known", path=source)
        return value.replace(ROOT_PLACEHOLDER, str(root))
    if isinstance(value, list):
        return [_fill_root(v, root, source) for v in value]
    if isinstance(value, dict):
        return {k: _fill_root(v, root, source) for k, v in value.items()}
    return value


def resolve_preset(choice: str) -> Preset:
    """A preset for a choice: itself when it is a preset, else the extractor with default parameters."""
    from emocli.features import EXTRACTORS

    if _is_path(choice) or choice in preset_names():
        return load_preset(choice)
    if choice in EXTRACTORS or ":" in choice:
        return Preset(choice, choice, source=f"extractor {choice!r}")
    raise ConfigError(
        f"{choice!r} is neither a preset ({', '.join(preset_names())}) nor an extractor "
        f"({', '.join(EXTRACTORS)}), nor a .toml preset file"
    )


def build_extractor(choice: str, overrides: Mapping[str, Any] | None = None, root: Path | None = None) -> Extractor:
    """The extractor a choice names, with its preset's parameters, then `overrides`, validated."""
    kind, params = preset_params(choice, overrides, root)
    return kind(params)


def preset_params(
    choice: str, overrides: Mapping[str, Any] | None = None, root: Path | None = None
) -> tuple[type[Extractor], ExtractorParams]:
    """The extractor class a choice names and its validated parameters, without building the extractor."""
    from pydantic import ValidationError

    preset = resolve_preset(choice)
    kind = extractor_class(preset.extractor)
    params = _fill_root({**preset.params, **(overrides or {})}, root, preset.source)
    try:
        return kind, kind.Params.model_validate(params)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'params'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid parameters for {preset.extractor}: {problems}", path=preset.source) from None


def build_extractors(choices: Mapping[str, list[str]], overrides: Iterable[str], root: Path | None) -> list[Extractor]:
    """Extractors for {modality: [preset, file or extractor name]}, with NAME.PARAM=VALUE overrides.

    What `emo extract --audio/--text/--visual ... --set ...` and pipeline recipes build; a choice given
    under the wrong modality, or an override naming no chosen extractor, is a ConfigError.
    """
    grouped = split_overrides(overrides)
    labels = {choice_label(c) for chosen in choices.values() for c in chosen}
    unused = sorted(set(grouped) - labels)
    if unused:
        raise ConfigError(f"--set {unused[0]}.…: {unused[0]!r} is not an extractor of this command ({', '.join(sorted(labels))})")
    extractors = []
    for modality, chosen in choices.items():
        for choice in chosen:
            extractor = build_extractor(choice, grouped.get(choice_label(choice)), root=root)
            if extractor.modality != modality:
                raise ConfigError(f"{choice!r} is a {extractor.modality} extractor: pass it with --{extractor.modality}")
            extractors.append(extractor)
    return extractors
