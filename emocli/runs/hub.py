"""Trained models by name: shipped with emo, on disk, or on the Hugging Face hub.

    resolve("emo-default")                   # a pretrained model shipped inside the package (emocli/pretrained/)
    resolve("runs/smile-ravdess-x")          # a run folder or unit on disk
    resolve("my-org/emo-smile", "v1.0")      # a hub repository (a run folder pushed by `emo push`), cached by
                                             # huggingface_hub; with HF_HUB_OFFLINE=1 from the cache only
    push("runs/smile-ravdess-x/seed=1/fold=0", "my-org/emo-smile")

What is downloaded is data: a run folder of JSON and safetensors, read by runs/inference.py like any
other (nothing in it is imported or unpickled); only those kinds of file are downloaded (DOWNLOADED), so a
repository's Python files or pickles never reach the disk. A hub that cannot be reached, a refused token or
an invalid id is one line saying what to do.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from emocli.core.errors import ConfigError, EmoError
from emocli.runs import layout

PRETRAINED = "pretrained"  # emocli/pretrained/<name>/: shipped models
DEFAULT_MODEL = "emo-default"
# What a pushed run does not need: the resumable state, trackers' logs, temporary files.
PUSH_IGNORE = [layout.CHECKPOINT, "*.tmp", ".*", "tensorboard/*", "mlruns/*"]
# What emo reads from a run or a bundle; nothing else of a hub repository is downloaded.
DOWNLOADED = ["*.json", "*.jsonl", "*.safetensors", "*.md"]


def pretrained_folder(name: str) -> Path:
    return Path(str(resources.files("emocli") / PRETRAINED / name))


def pretrained_names() -> list[str]:
    root = resources.files("emocli") / PRETRAINED
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def is_hub_id(name: str) -> bool:
    """"owner/name": a hub repository (`resolve` takes a local path of that form as a path when it, or its
    first folder, exists)."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def resolve(model: str | Path, revision: str | None = None) -> Path:
    """The local folder of a model given by name, path or hub id (downloaded to the hub cache if needed)."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    name = str(model)
    if name in pretrained_names():
        return pretrained_folder(name)
    if is_hub_id(name) and not Path(name.split("/")[0]).is_dir():
        _check_repo_id(name)
        return _download(name, revision)
    if len(path.parts) > 1:  # a path (runs/mmer-x where runs/ is a folder here, a/b/c, ./x): not the hub's
        raise ConfigError(f"no such run folder{_nearest(path)}", path=path)
    shipped = ", ".join(pretrained_names()) or "none installed"
    raise ConfigError(f"{name!r} is neither a folder, nor a pretrained model ({shipped}), nor a hub id (owner/name)")


def _nearest(path: Path) -> str:
    """", did you mean runs/mmer-ravdess-...?" for the folders beside a mistyped one with the closest names."""
    import difflib

    if not path.parent.is_dir():
        return f" ({path.parent} does not exist either)"
    beside = [p.name for p in path.parent.iterdir() if p.is_dir()]
    close = difflib.get_close_matches(path.name, beside, n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(str(path.parent / c) for c in close)}?)" if close else ""


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id, revision=revision, repo_type="model", allow_patterns=DOWNLOADED))
    except LocalEntryNotFoundError:
        raise EmoError(
            f"{repo_id}{'@' + revision if revision else ''} is not in the hub cache and the hub cannot be reached "
            "(offline, or HF_HUB_OFFLINE=1): download it once with a connection"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise EmoError(f"{repo_id}: {str(error).splitlines()[0]}") from None
    except HfHubHTTPError as error:
        raise EmoError(f"{repo_id}: the hub answered {str(error).splitlines()[0]}") from None
    except (OSError, ValueError) as error:  # the hub's client's network errors, a revision it refuses
        raise _hub_error(error, repo_id, "download") from None


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ConfigError(f"{repo_id!r} is not a valid hub repository id ({' '.join(str(error).split())})") from None


def _hub_error(error: BaseException, repo_id: str, action: str) -> EmoError:
    """One line for a failed hub call: a refused token, the hub's answer, or no connection."""
    import os

    from huggingface_hub.errors import HfHubHTTPError

    reason = " ".join(str(error).split()) or type(error).__name__
    reason = reason if len(reason) <= 200 else reason[:200] + "..."
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 403):
        return EmoError(f"{repo_id}: the hub refused to {action} ({reason}); log in with `hf auth login` or give a "
                        "token with write access (--token, $HF_TOKEN)")
    if isinstance(error, HfHubHTTPError):
        return EmoError(f"{repo_id}: the hub answered {reason}")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return EmoError(f"{repo_id}: cannot reach the Hugging Face hub at {endpoint} to {action} ({reason}); check the "
                    "connection (or $HF_ENDPOINT) and run the same command again; nothing was changed on the hub")


def push(run: str | Path, repo_id: str, *, revision: str | None = None, private: bool = False,
         token: str | None = None, message: str | None = None) -> str:
    """Upload a run folder (or one unit) with its model card to a hub model repository; returns its URL."""
    from huggingface_hub import HfApi

    folder = Path(run)
    layout.units(folder)  # a run folder, or an error naming it
    if not (folder / "README.md").is_file():
        raise ConfigError("has no README.md model card (a finished unit or run writes one)", path=folder)
    if not is_hub_id(repo_id):
        raise ConfigError(f"{repo_id!r} is not a hub repository id (owner/name)")
    _check_repo_id(repo_id)
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
            ignore_patterns=PUSH_IGNORE, commit_message=message or f"emo push {folder.name}",
        )
    except EmoError:
        raise
    except Exception as error:  # noqa: BLE001 - the hub client's network, HTTP and token errors, in one line
        raise _hub_error(error, repo_id, "push") from None
    return commit.commit_url
