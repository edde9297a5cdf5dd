"""Registries name their classes as "package.module:Class" so that listing them imports nothing heavy."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(reference: str) -> Any:
    """The object named by "package.module:Name", imported on demand."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
