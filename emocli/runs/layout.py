"""Run directories: what a training run leaves behind, and how it is read back.

    RUNS/<model>-<dataset>-<name or timestamp>/
      run.json                 command, config fingerprint, seeds, folds, protocol (written first)
      results.csv, results.json   one row per seed/fold, and mean ± std over them (written last)
      seed=S/fold=K/           one trained model (fold=none: the dataset's own split)
        model.safetensors      best weights (strict loading)
        normalization.safetensors  per-feature mean and scale fitted on the training rows (normalize.py)
        config.json            {"model_name", "model": model config, "train": train config, "dataset", ...}
        label_map.json         LabelMap.to_json()
        feature_spec.json      input unit + one InputSpec per modality (extractor name, params, versions)
        splits.json            sample ids of train / valid / test (what the metrics are about)
        metrics.jsonl          one line per epoch: losses, train/valid(/test) metrics, lr, seconds
        checkpoint.pt          resumable state, rewritten atomically each epoch; removed when done
        test_metrics.json      metrics of the best weights on the test split: the unit is finished
        README.md, learning_curves.png, confusion_matrix.png

Weights are safetensors; everything else JSON; the resumable checkpoint is a torch file of tensors and
plain containers only, loaded with weights_only=True (no pickled code ever runs).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emocli.core import io
from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import append_text, atomic_open, write_text, write_with

WEIGHTS = "model.safetensors"
NORMALIZATION = "normalization.safetensors"
CONFIG = "config.json"
LABEL_MAP = "label_map.json"
FEATURE_SPEC = "feature_spec.json"
SPLITS = "splits.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
TEST_METRICS = "test_metrics.json"
RUN_INFO = "run.json"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
CARD = "README.md"
# What reading a unit back reads: an output (an ONNX export, its description) never replaces one of them.
UNIT_INPUTS = (WEIGHTS, NORMALIZATION, CONFIG, LABEL_MAP, FEATURE_SPEC, SPLITS, METRICS, TEST_METRICS, CARD)


def unit_dir(root: Path, seed: int, fold: int | None) -> Path:
    return root / f"seed={seed}" / f"fold={'none' if fold is None else fold}"


def parse_unit(path: Path) -> tuple[int, int | None]:
    """(seed, fold) of a unit directory .../seed=S/fold=K."""
    try:
        fold = path.name.split("=", 1)[1]
        seed = int(path.parent.name.split("=", 1)[1])
        return seed, None if fold == "none" else int(fold)
    except (IndexError, ValueError):
        raise EmoError("not a run unit directory (expected .../seed=S/fold=K)", path=path) from None


def units(root: Path) -> list[Path]:
    """The seed/fold directories of a run root, or the root itself when it is one (its config.json, of any
    kind: reading it says what is wrong with one that is not a regular file)."""
    if os.path.lexists(root / CONFIG) and not (root / CONFIG).is_dir():
        return [root]
    found = sorted(p.parent for p in root.glob(f"seed=*/fold=*/{CONFIG}"))
    if not found:
        raise EmoError("not a run directory (no seed=*/fold=*/config.json)", path=root)
    return found


# --------------------------------------------------------------------------------------------- files


def to_json(data: Any) -> str:
    """What write_json writes (numpy scalars and arrays, and paths, as plain JSON)."""
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path: Path, data: Any) -> None:
    """Write to a temporary file and rename, so a reader never sees half a file (core/io.py)."""
    write_text(path, to_json(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, Path)):
        return value.tolist() if isinstance(value, np.ndarray) else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path, expect: type = object) -> Any:
    """A JSON file of a run; EmoError naming it when it is missing, unreadable, not a regular file, larger
    than a run's files are, not JSON, nested too deeply, or (with `expect`, e.g. dict) not that kind of value."""
    return io.read_json(path, expect, missing="missing file of a run directory")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    append_text(path, json.dumps(record, sort_keys=True, default=_json_default) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a last line cut short (a process killed while appending) is skipped."""
    if not path.exists():
        return []
    records = []
    data = io.read_bytes(path, io.JSON_LIMIT)
    lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            records.append(io.parse_json(line, path, where=f"line {number}: "))
        except EmoError:
            if number == len(lines):
                break
            raise
    return records


def truncate_jsonl(path: Path, keep: int) -> None:
    """Keep the first `keep` records: epochs logged after the last checkpoint are run again on resume."""
    records = read_jsonl(path)[:keep]
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


# ------------------------------------------------------------------------------------------- weights


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Best weights as safetensors (shared tensors stored once), written atomically."""
    from safetensors.torch import save_model

    write_with(path, lambda temporary: save_model(model, str(temporary), metadata=metadata, force_contiguous=True))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Strict loading: a missing or unexpected tensor is an error that names them. safetensors parses a
    header and copies tensors, so a damaged or foreign file (a pickle) is refused, never executed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    io.regular_file(path, missing="no weights (the run has not finished its first epoch)")  # no FIFO, no device
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError) as error:  # truncated, not safetensors at all, unreadable
        raise EmoError(f"not a readable safetensors file ({error}); retrain or restore it", path=path) from None
    except RuntimeError as error:  # shape mismatches
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise ConfigError(f"weights do not fit the model built from config.json: {message}", path=path) from None
    if missing or unexpected:
        raise ConfigError(
            "weights do not fit the model built from config.json: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}",
            path=path,
        )


# ---------------------------------------------------------------------------------------- checkpoint


def rng_state() -> dict[str, Any]:
    """Every RNG a training epoch draws from, as tensors and plain containers (weights_only-loadable)."""
    np_state = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_open(path, "wb") as handle:  # a Python file object: a full disk raises OSError(ENOSPC)
        torch.save(state, handle)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The resumable state, or None when there is none. weights_only=True: tensors and plain containers
    only, so a checkpoint holding pickled objects is refused and nothing in it runs."""
    import pickle
    import warnings

    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        problem = "holds more than tensors and plain containers (pickled objects are never loaded)"
    except (RuntimeError, EOFError, OSError, ValueError):
        problem = "not a complete PyTorch checkpoint (truncated or damaged)"
    else:
        if isinstance(state, dict):
            return state
        problem = f"holds a {type(state).__name__}, not the resumable state"
    raise EmoError(f"cannot resume from this checkpoint: {problem}; delete it to train the unit from its start", path=path)
