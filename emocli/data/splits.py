"""Train / valid / test row positions: the dataset's split or a fold held out, and a validation split carved
reproducibly (by whole dialogues or speakers) where the dataset has none."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emocli.core.errors import ConfigError


def _groups(samples: pd.DataFrame, group_by: str, conversation: bool) -> pd.Series:
    """The unit that a carved validation split keeps whole: dialogues, else speakers, else samples."""
    has_dialogues = samples["dialogue_id"].notna().any()
    if group_by == "auto":
        if has_dialogues:
            group_by = "dialogue"
        elif samples["speaker"].notna().any():
            group_by = "speaker"
        else:
            group_by = "sample"
    if conversation and has_dialogues and group_by != "dialogue":
        raise ConfigError(f"a conversation model needs whole dialogues in each split, not split by {group_by}")
    column = {"dialogue": "dialogue_id", "speaker": "speaker", "sample": "sample_id"}[group_by]
    if samples[column].isna().any():
        raise ConfigError(f"cannot carve a validation split by {group_by}: some samples have no {column}")
    return samples[column].astype(str)


def carve(pool: np.ndarray, groups: pd.Series, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions `pool` into (train, valid) by whole groups; the same seed, the same split."""
    names = np.array(sorted(groups.iloc[pool].unique()))
    if fraction <= 0:
        return pool, pool[:0]
    if len(names) < 2:
        raise ConfigError(f"cannot carve a validation split from {len(names)} group(s)")
    n_valid = min(max(1, round(fraction * len(names))), len(names) - 1)
    chosen = set(np.random.default_rng(seed).permutation(names)[:n_valid])
    in_valid = groups.iloc[pool].isin(chosen).to_numpy()
    return pool[~in_valid], pool[in_valid]


def dataset_folds(samples: pd.DataFrame) -> list[int]:
    return sorted(int(f) for f in samples["fold"].dropna().unique())


def training_only(samples: pd.DataFrame, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Augmented copies (a non-empty `augmentation` column) train, and are never validated or tested on."""
    if "augmentation" not in samples or samples["augmentation"].isna().all():
        return splits
    copies = samples["augmentation"].notna().to_numpy()
    return {part: rows if part == "train" else rows[~copies[rows]] for part, rows in splits.items()}


def make_splits(
    samples: pd.DataFrame,
    *,
    fold: int | None,
    seed: int,
    valid_fraction: float,
    group_by: str = "auto",
    conversation: bool = False,
) -> dict[str, np.ndarray]:
    """Row positions of train / valid / test.

    Without a fold: the dataset's split column; a missing validation split is carved from train.
    With fold k: test = samples with fold == k, train = all others, validation carved from train (the
    dataset's own valid split is not used: folds are the protocol).
    Carving keeps dialogues (conversation data) or speakers (e.g. RAVDESS actors) whole, so validation
    is as speaker-independent as the test.
    """
    rows = np.arange(len(samples))
    groups = _groups(samples, group_by, conversation) if valid_fraction > 0 else None
    if fold is not None:
        folds = samples["fold"]
        if folds.isna().all():
            raise ConfigError("the dataset defines no folds; drop --folds to use its train/valid/test split")
        if fold not in dataset_folds(samples):
            raise ConfigError(f"fold {fold} is not one of the dataset's folds {dataset_folds(samples)}")
        is_test = (folds == fold).fillna(False).to_numpy(dtype=bool)
        test, pool = rows[is_test], rows[~is_test]
        train, valid = carve(pool, groups, valid_fraction, seed) if groups is not None else (pool, pool[:0])
        return training_only(samples, {"train": train, "valid": valid, "test": test})

    split = samples["split"]
    if not (split == "train").any():
        if samples["fold"].notna().any():
            hint = " (it has folds: use --folds all, or a fold)"
        elif split.isna().all():
            hint = ("; no sample has a split: give a manifest a split column (train, valid, test; valid may be left "
                    "out) or a fold column and train with --folds all")
        else:
            hint = f" (its splits: {', '.join(sorted(split.dropna().astype(str).unique()))})"
        raise ConfigError(f"the dataset has no train split{hint}")
    train = rows[(split == "train").fillna(False).to_numpy(dtype=bool)]
    valid = rows[(split == "valid").fillna(False).to_numpy(dtype=bool)]
    test = rows[(split == "test").fillna(False).to_numpy(dtype=bool)]
    if not len(valid) and groups is not None:
        train, valid = carve(train, groups, valid_fraction, seed)
    return training_only(samples, {"train": train, "valid": valid, "test": test})


