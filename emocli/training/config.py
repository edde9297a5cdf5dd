"""A run's `TrainConfig` (runs/config.py) from a training preset plus options and `--set` overrides.

Presets live in `emocli/presets/train/<name>.toml` (or any path) and may `extends = "<other>"`
(core/settings.py). When no preset is named, the model's own (its registration's `preset`: the
optimiser, schedule, losses and selection rule of its paper) is used.

Overrides are dotted: `--set optimizer.lr=2e-3 --set model.d_model=64 --set loss.smoothing=0.1`;
`model.<field>` changes the model configuration, `loss.<field>` its objective, `step.<field>` the
train step.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ValidationError

from emocli.core.errors import ConfigError
from emocli.core.settings import did_you_mean, load_preset, parse_assignment, set_dotted
from emocli.runs.config import TrainConfig

# `--set model.x=1` targets the model configuration; `model` itself is the model's name.
_ALIASES = {"model": "model_params"}


def apply_overrides(data: dict, assignments: list[str]) -> dict:
    """`key.sub=value` assignments applied to a copy of a nested dict."""
    result = copy.deepcopy(data)
    for assignment in assignments:
        key, value = parse_assignment(assignment)
        parts = key.split(".")
        if parts == ["model"]:
            raise ConfigError("--set model=...: the model is the command's argument; --set model.<field>=... "
                              "changes its configuration")
        if len(parts) > 1 and parts[0] in _ALIASES:
            parts[0] = _ALIASES[parts[0]]
        set_dotted(result, ".".join(parts), value)
    return result


def _problem(error: dict[str, Any]) -> str:
    location = ".".join(str(p) for p in error["loc"]) or "config"
    if error["type"] == "extra_forbidden":
        known = TrainConfig.model_fields
        for part in error["loc"][:-1]:  # a nested table (optimizer.lrr): its own fields
            field = known.get(str(part))
            table = field.annotation if field is not None else None
            if not (isinstance(table, type) and issubclass(table, BaseModel)):
                break
            known = table.model_fields
        return f"{location}: unknown setting{did_you_mean(str(error['loc'][-1]), known)}"
    return f"{location}: {error['msg']}"


def resolve_config(model: str, preset: str | None = None, overrides: list[str] | None = None, **fields: Any) -> TrainConfig:
    """Model's preset (or the named one) <- explicit fields (CLI options) <- `--set` overrides."""
    from emocli.models.registry import get_model

    name = preset or get_model(model).preset
    data, source = load_preset("train", name)
    if data.get("model", model) != model:
        raise ConfigError(f"preset {name!r} is a recipe for {data['model']!r}, not {model!r}", path=source)
    data.update({"model": model, "preset": name})
    data.update({k: v for k, v in fields.items() if v is not None})
    data = apply_overrides(data, overrides or [])
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors())
        culprits = _assignments_at(overrides or [], error)
        if culprits is not None:  # the preset file is fine: name what was set, not the file
            raise ConfigError(f"invalid training configuration ({problems}), set by {', '.join(culprits)}") from None
        raise ConfigError(f"invalid training configuration ({problems})", path=source) from None


def _assignments_at(assignments: list[str], error: ValidationError) -> list[str] | None:
    """The assignments that every problem of `error` lies in (or under); None when one lies elsewhere."""
    keys = {}
    for assignment in assignments:
        parts = parse_assignment(assignment)[0].split(".")
        if len(parts) > 1 and parts[0] in _ALIASES:
            parts[0] = _ALIASES[parts[0]]
        keys[assignment] = ".".join(parts)
    culprits = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        found = [a for a, key in keys.items() if location == key or location.startswith(key + ".")
                 or key.startswith(location + ".")]
        if not found:
            return None
        culprits += [a for a in found if a not in culprits]
    return culprits
