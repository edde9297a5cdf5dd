"""Pretrained checkpoints named by a Hugging Face hub id or a local folder: where to load them from, what
pins their weights in a feature set's identity, and what makes a model folder safe to hand to
transformers.

A model folder is data. transformers runs a folder's own Python when its config maps classes to it
(`auto_map`) and the caller trusts remote code; without an explicit answer it *asks at the terminal*, so
a run folder naming such a model would turn one keystroke into code execution. emo passes
`trust_remote_code=False` to every loader (`NO_REMOTE_CODE`) and refuses a folder whose configs carry an
`auto_map`, before transformers reads anything; it also refuses folders holding named pipes or devices,
which transformers would open and block on.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from emocli.core.errors import ConfigError
from emocli.core.io import read_json

# What every from_pretrained call of emo passes: remote code is never run, and never asked about.
NO_REMOTE_CODE: dict[str, Any] = {"trust_remote_code": False}
# The files in which transformers looks for `auto_map` (the model's, the tokenizer's, the processors').
CODE_MAPS = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json",
             "feature_extractor_config.json", "image_processor_config.json")
MAX_MODEL_FILES = 10_000  # a model folder holds tens of files; a scan stops well before a whole disk


def check_model_folder(folder: str | Path, what: str) -> None:
    """A local model folder as transformers may read it: regular files and folders only (no FIFO, device or
    socket), and no config that names the folder's own Python code (`auto_map`)."""
    folder = Path(folder)
    seen = 0
    for parent, folders, files in os.walk(folder):  # links to folders are not followed
        for name in files:
            seen += 1
            path = Path(parent) / name
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue  # a dangling link: transformers reports it if it needs the file
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{what} folder holds {path.relative_to(folder)}, which is not a regular file "
                                  "(a pipe or a device); emo reads only regular files", path=folder)
        if seen > MAX_MODEL_FILES:
            raise ConfigError(f"{what} folder holds more than {MAX_MODEL_FILES:,} files; not a model folder",
                              path=folder)
    for name in CODE_MAPS:
        path = folder / name
        if path.exists() and "auto_map" in read_json(path, dict, error=ConfigError):
            refuse_remote_code(path)


def refuse_remote_code(where: str | Path | None, name: str | None = None) -> None:
    """The one-line refusal of a model that needs its own Python code."""
    which = f"{name} " if name else ""
    raise ConfigError(
        f"{which}maps its classes to the model's own Python code (auto_map); emo never runs code from a model "
        "folder or the hub: use a model whose architecture transformers ships",
        path=where,
    )


def check_config(config: Any, name: str, location: str) -> Any:
    """A loaded transformers config, refused when it names remote code (a hub model's config.json)."""
    if getattr(config, "auto_map", None):
        refuse_remote_code(location if Path(location).exists() else None, name)
    return config


def resolve_checkpoint(name: str, what: str) -> tuple[str, bool]:
    """(what from_pretrained gets, whether it is a local folder) for a hub id or a local folder; a local
    folder is checked first (check_model_folder)."""
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_folder(path, what)
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
