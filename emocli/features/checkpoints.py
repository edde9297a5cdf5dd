"""Pretrained checkpoints named by a Hugging Face hub id or a local folder: where to load them from, and
what pins their weights in a feature set's identity."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from emocli.core.errors import ConfigError


def resolve_checkpoint(name: str, what: str) -> tuple[str, bool]:
    """(what from_pretrained gets, whether it is a local folder) for a hub id or a local folder."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True
    # A hub id is "name" or "owner/name"; anything else that looks like a path must exist.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ConfigError(f"{what} folder not found", path=name)
    return name, False


def checkpoint_identity(location: str, local: bool, revision: str | None) -> dict[str, Any]:
    """What pins a checkpoint's weights: a digest of a local folder, or the hub id and cached commit."""
    if local:
        return {"local_digest": local_model_digest(Path(location))}
    return {"hub_id": location, "commit": hub_commit(location, revision)}


def load_failure(error: Exception, name: str, location: str, local: bool, what: str) -> ConfigError:
    """The one-line error for a checkpoint from_pretrained could not load."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if local:
        return ConfigError(f"could not load a {what} from this folder: {reason}", path=location)
    return ConfigError(
        f"could not load {what} {name!r} ({reason}). Without internet a hub model loads only from the local "
        "Hugging Face cache: pass a local model folder instead"
    )


def local_model_digest(directory: Path) -> str:
    """Identity of a model folder without reading its weights: config.json and each file's size.

    Retraining or swapping weights changes a file size or the config in practice; hashing gigabytes of
    weights for every feature-set key would not be worth its cost.
    """
    digest = hashlib.sha256()
    config = directory / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for file in sorted(directory.iterdir()):
        if file.is_file() and not file.name.startswith("."):
            digest.update(f"{file.name}:{file.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """Commit of a hub checkpoint in the local cache (None when it cannot be told)."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return Path(cached).parent.name  # <cache>/models--owner--name/snapshots/<commit>/config.json
    return None
