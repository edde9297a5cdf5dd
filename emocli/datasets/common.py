"""What the adapters of corpora labelled by their file names share: finding the files, folding whole
speakers, and saying where a copy differs from the release.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def media_files(root: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files at any depth under `root` whose suffix is one of `suffixes` (any case), in path order. Hidden
    files and folders are skipped: macOS '._' forks, and the half-unpacked `.NAME.partial` of a download."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in sorted(files)
                  if not name.startswith(".") and name.lower().endswith(tuple(suffixes))]
    return without_loops(found)


def without_loops(paths: Sequence[Path]) -> list[Path]:
    """`paths` less the symbolic links that loop (resolving them would raise), each named in a warning."""
    from emocli.core.paths import resolved

    kept = []
    for path in paths:
        if path.is_symlink() and resolved(path) is None:
            logging.getLogger(__name__).warning("%s: a symbolic link that loops; skipped", path)
            continue
        kept.append(path)
    return kept


def folds_of(groups: Sequence[Sequence[str]]) -> dict[str, int]:
    """speaker -> fold from a fixed tuple of folds, each a tuple of speakers."""
    return {speaker: fold for fold, members in enumerate(groups) for speaker in members}


def speaker_folds(speakers: Sequence[str], labels: Sequence[str], n_folds: int = 5) -> dict[str, int]:
    """Whole speakers into `n_folds` folds, each fold's class mix as close to the corpus's as whole speakers
    allow: scikit-learn's StratifiedGroupKFold, unshuffled, so the same files always give the same folds,
    whatever their order. Fewer folds when there are fewer speakers (or, in a tiny copy, when no class has
    `n_folds` samples). Returns speaker -> fold (0-based)."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(speakers, dtype=object)
    names = sorted(set(speakers))
    n_splits = min(n_folds, len(names), max(Counter(labels).values(), default=0))
    if n_splits < 2:
        return dict.fromkeys(names, 0)
    splitter = StratifiedGroupKFold(n_splits=n_splits)
    folds = {}
    with warnings.catch_warnings():
        # "The least populated class has only N members": expected of small or partial copies.
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(groups)), np.asarray(labels), groups)):
            folds.update(dict.fromkeys(groups[held_out], fold))
    return folds


def count_notes(found: Mapping[str, int], release: Mapping[str, int], what: str) -> list[str]:
    """A note when the per-class counts read differ from the release's (a partial or altered copy)."""
    differs = {label: (found.get(label, 0), n) for label, n in release.items() if found.get(label, 0) != n}
    extra = {label: n for label, n in found.items() if label not in release}
    if not differs and not extra:
        return []
    parts = [f"{label} {have} (release {n})" for label, (have, n) in differs.items()]
    parts += [f"{label} {n} (release none)" for label, n in extra.items()]
    return [f"not the release's {sum(release.values())} {what}: " + ", ".join(parts)]

