"""Checks the commands share for their numeric options: a number must be finite and within its range, which
`--help` states (`between(...)` gives both the check and the words). click's own ranges let NaN through
(every comparison with NaN is false) and answer in a framed block; these answer in emo's one line."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# Worker processes of an extraction: more than any machine here has cores, fewer than would fork-bomb one.
MAX_WORKERS = 256


def describe(low: float | None, high: float | None, low_open: bool = False) -> str:
    """'more than 0 and at most 3600', 'from 1 to 256', 'at least 0'."""
    if low is not None and high is not None and not low_open:
        return f"from {low:g} to {high:g}"
    parts = []
    if low is not None:
        parts.append(f"{'more than' if low_open else 'at least'} {low:g}")
    if high is not None:
        parts.append(f"at most {high:g}")
    return " and ".join(parts)


def between(low: float | None, high: float | None, *, low_open: bool = False) -> Callable[[Any, Any, Any], Any]:
    """A typer callback refusing a value that is not finite or lies outside [low, high] (low excluded with
    `low_open`); None (an option not given) passes."""

    def check(ctx: Any, param: Any, value: Any) -> Any:
        from emocli.core.errors import ConfigError

        if value is None:
            return value
        number = float(value)
        outside = (low is not None and (number < low or (low_open and number == low))) or (
            high is not None and number > high
        )
        if not math.isfinite(number) or outside:
            name = max(param.opts, key=len) if param is not None else "value"
            raise ConfigError(f"{name} {value}: give a number {describe(low, high, low_open)}")
        return value

    return check
