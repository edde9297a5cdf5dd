"""Named extractor presets: small TOML files a user can print, copy, edit and pass back as a path.

A preset (`emocli/presets/extract/<name>.toml`):

    extractor = "opensmile"     # a registered extractor name (emocli.features.EXTRACTORS or a plugin's)
    description = "openSMILE ComParE_2016 functionals: one 6373-d vector per clip"

    [params]                    # the extractor's Params; "{root}" in a string is the dataset root
    feature_set = "ComParE_2016"

Wherever an extractor is chosen (`emo extract --audio X`), X is a preset name, a path to a preset
file, or an extractor name (its default parameters). Parameters are overridden with assignments
"X.param=value", read by the one settings parser (core/settings.py): TOML values, bare words as
strings, "none" as None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocli.core.errors import ConfigError
from emocli.core.settings import is_preset_path, load_preset, parse_assignments, preset_names, preset_source

if TYPE_CHECKING:
    from emocli.features.base import Extractor, ExtractorParams

ROOT_PLACEHOLDER = "{root}"
KIND = "extract"


@dataclass(frozen=True)
class Preset:
    name: str
    extractor: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it was read from, for error messages


def extraction_presets() -> list[str]:
    return preset_names(KIND)


def preset_text(choice: str) -> str:
    """The TOML of a named preset (or preset file), as `emo extract --preset NAME --show` prints it."""
    return preset_source(KIND, choice)[0]


def read_preset(choice: str) -> Preset:
    """A preset by name or path; ConfigError naming the file for malformed TOML or keys."""
    data, source = load_preset(KIND, choice)
    unknown = set(data) - {"extractor", "description", "params"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}; a preset has extractor, description, [params]", path=source)
    if not isinstance(data.get("extractor"), str):
        raise ConfigError('a preset needs extractor = "<name>"', path=source)
    if not isinstance(data.get("params", {}), dict):
        raise ConfigError("params must be a table ([params])", path=source)
    name = Path(choice).stem if is_preset_path(choice) else choice
    return Preset(name, data["extractor"], data.get("description", ""), data.get("params", {}), source)


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
    return Path(choice).stem if is_preset_path(choice) else choice


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
    from emocli.features import extractor_names

    if is_preset_path(choice) or choice in extraction_presets():
        return read_preset(choice)
    if choice in extractor_names():
        return Preset(choice, choice, source=f"extractor {choice!r}")
    raise ConfigError(
        f"{choice!r} is neither a preset ({', '.join(extraction_presets())}) nor an extractor "
        f"({', '.join(extractor_names())}), nor a .toml preset file"
    )


def build_extractor(
    choice: str, overrides: Mapping[str, Any] | None = None, root: Path | None = None, **params: Any
) -> Extractor:
    """The extractor a choice names, with its preset's parameters, then `overrides` and `params`, validated."""
    kind, validated = preset_params(choice, {**(overrides or {}), **params}, root)
    return kind(validated)


def preset_params(
    choice: str, overrides: Mapping[str, Any] | None = None, root: Path | None = None
) -> tuple[type[Extractor], ExtractorParams]:
    """The extractor class a choice names and its validated parameters, without building the extractor."""
    from pydantic import ValidationError

    from emocli.features import extractor_class

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


def preset_of(extractor: str, params: Mapping[str, Any], root: Path | None = None) -> str | None:
    """The shipped preset that makes these identity parameters of `extractor` (defaults filled in, `{root}`
    resolved against `root`): how a feature set is named to people, whose directory name holds a hash.
    None when no preset does (an extractor by name with other parameters, a preset file of one's own)."""
    for name in extraction_presets():
        if read_preset(name).extractor != extractor:
            continue
        try:
            kind, validated = preset_params(name, root=root)
        except ConfigError:  # e.g. a preset reading a file under {root}, and no dataset root is known
            continue
        if kind.identity_of(validated) == dict(params):
            return name
    return None


def feature_set_label(name: str, preset: str | None) -> str:
    """A feature set as it is shown: "minilm (text__hf-text__ae6fc977706e)", or its name without a preset."""
    return f"{preset} ({name})" if preset else name


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
