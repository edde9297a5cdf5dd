"""Files: cheap identities of inputs (what the feature store's cache is keyed on)."""

from __future__ import annotations

import hashlib
import os


def file_fingerprint(path: str | os.PathLike) -> str:
    """Cheap identity of a file's content: size and modification time (as audinterface does not)."""
    stat = os.stat(path)
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
