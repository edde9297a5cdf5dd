"""Feature store -> tensors: which feature sets feed the model, which samples form each split, batches.

Three steps, each a plain function:
1. `select_inputs`: one feature set per modality, from `--feature` choices or the store's only fit.
2. `load_data`: the chosen feature sets joined on sample_id with the labels, in memory (features are
   small next to the media they came from), in the order of the sample table.
3. `make_splits`: train / valid / test row positions; a validation split carved reproducibly where the
   dataset has none; folds hold out `fold == k` as the test.
Then `Collator` turns row positions into a `Batch`: utterance models get [B, ...] tensors with padded
sequences and masks; conversation models get whole dialogues, ordered by position and padded to
[B, L, ...] with masks["utterance"].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from emocli.core.errors import ConfigError
from emocli.core.types import LabelMap
from emocli.features.presets import preset_names, preset_params

if TYPE_CHECKING:
    from emocli.features.store import FeatureSetInfo, FeatureStore
    from emocli.registry import ModelEntry


# ------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSpec:
    """One model input: a feature set of the store, and what predict needs to remake it."""

    modality: str
    feature_set: str
    extractor: str
    kind: str  # "vector" or "sequence"
    dim: int
    extractor_spec: dict[str, Any]  # Extractor.spec(): name, params, versions

    def to_json(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "feature_set": self.feature_set,
            "extractor": self.extractor,
            "kind": self.kind,
            "dim": self.dim,
            "extractor_spec": self.extractor_spec,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**data)

    @classmethod
    def from_info(cls, info: FeatureSetInfo) -> InputSpec:
        return cls(
            modality=info.modality,
            feature_set=info.name,
            extractor=info.extractor,
            kind=info.kind,
            dim=info.dim,
            extractor_spec=info.spec.get("extractor", {}),
        )


def _matches(info: FeatureSetInfo, choice: str, dataset_root: Path | None) -> bool:
    """A `--feature` choice names a feature set, an extractor, or an extraction preset (name or file).

    A preset matches the feature set its extractor and parameters (defaults filled in, `{root}` resolved
    against the store's dataset) would write, whatever library versions made it.
    """
    if choice in (info.name, info.extractor):
        return True
    if choice not in preset_names() and not choice.endswith(".toml"):
        return False
    kind, params = preset_params(choice, root=dataset_root)
    recorded = info.spec.get("extractor", {})
    return kind.name == info.extractor and kind.identity_of(params) == recorded.get("params")


def select_inputs(
    store: FeatureStore,
    entry: ModelEntry,
    modalities: list[str] | None = None,
    choices: dict[str, str] | None = None,
) -> dict[str, InputSpec]:
    """One feature set per modality: the model's modalities (or the requested subset) that the store has.

    A modality with a `choices` entry takes the feature set it names; otherwise the store must hold exactly
    one feature set of that modality in a kind the model reads (else the choice is ambiguous and the
    error lists the candidates). Requested modalities must be found; unrequested ones are optional.
    """
    choices = dict(choices or {})
    unknown = set(choices) - set(entry.modalities)
    if unknown:
        raise ConfigError(f"{entry.name} has no modality {sorted(unknown)}; it reads {list(entry.modalities)}")
    wanted = list(modalities) if modalities else list(entry.modalities)
    for modality in wanted:
        if modality not in entry.modalities:
            raise ConfigError(f"{entry.name} reads {list(entry.modalities)}, not {modality!r}")
    selected: dict[str, InputSpec] = {}
    for modality in wanted:
        candidates = [i for i in store.find(modality=modality) if i.kind in entry.input_kinds and i.n_rows]
        if modality in choices:
            root = store.dataset().get("root")
            matching = [
                i for i in store.find(modality=modality) if _matches(i, choices[modality], root and Path(root))
            ]
            if not matching:
                known = ", ".join(i.name for i in store.find(modality=modality)) or "none"
                raise ConfigError(
                    f"--feature {modality}={choices[modality]}: no such feature set (the store's {modality} "
                    f"feature sets: {known})",
                    path=store.path,
                )
            if len(matching) > 1:
                names = ", ".join(i.name for i in matching)
                raise ConfigError(f"--feature {modality}={choices[modality]} is ambiguous: {names}", path=store.path)
            if matching[0].kind not in entry.input_kinds:
                raise ConfigError(
                    f"{matching[0].name} holds {matching[0].kind} features; {entry.name} reads "
                    f"{', '.join(entry.input_kinds)}",
                    path=store.path,
                )
            candidates = matching
        elif len(candidates) > 1:
            names = ", ".join(i.name for i in candidates)
            raise ConfigError(
                f"several {modality} feature sets fit {entry.name}: {names}; choose one with "
                f"--feature {modality}=<name or extractor>",
                path=store.path,
            )
        if candidates:
            selected[modality] = InputSpec.from_info(candidates[0])
        elif modalities:
            raise ConfigError(f"the store has no {modality} features {entry.name} can read", path=store.path)
    if not selected:
        raise ConfigError(
            f"the store has no features {entry.name} can read ({', '.join(entry.modalities)} as "
            f"{', '.join(entry.input_kinds)}); run `emo extract` first",
            path=store.path,
        )
    return selected


def store_label_map(store: FeatureStore) -> LabelMap:
    """The dataset's label map, as the adapter described it when the store was written."""
    labels = store.dataset().get("labels")
    if not labels:
        raise ConfigError("the store records no label map (samples.parquet metadata)", path=store.path)
    return LabelMap.from_json(labels)


# ------------------------------------------------------------------------------------- data


@dataclass
class EmotionData:
    """Labelled samples that have every chosen input, with their features and targets, in memory."""

    samples: pd.DataFrame  # the canonical sample table, filtered; row i <-> features[m][i], targets[i]
    features: dict[str, list[np.ndarray]]  # modality -> per sample [D] or [T, D]
    targets: np.ndarray  # [N] int64 class indices, or [N, C] float32 multi-hot
    label_map: LabelMap
    inputs: dict[str, InputSpec]
    dropped: dict[str, int] = field(default_factory=dict)  # why samples were left out -> count

    def __len__(self) -> int:
        return len(self.samples)


def load_data(store: FeatureStore, inputs: dict[str, InputSpec], label_map: LabelMap) -> EmotionData:
    samples = store.samples()
    dropped: dict[str, int] = {}
    if label_map.task == "single_label":
        labelled = samples["label"].notna()
    else:
        labelled = pd.Series(True, index=samples.index)  # an empty label list is a valid target
    dropped["no label"] = int((~labelled).sum())
    samples = samples[labelled]

    per_modality = {}
    for modality, spec in inputs.items():
        values = store.read_features(spec.feature_set)
        present = samples["sample_id"].isin(values.keys())
        dropped[f"no {modality} features"] = int((~present).sum())
        samples = samples[present]
        per_modality[modality] = values
    samples = samples.reset_index(drop=True)
    if samples.empty:
        raise ConfigError("no labelled sample has every chosen feature set", path=store.path)

    features = {m: [values[sid].values for sid in samples["sample_id"]] for m, values in per_modality.items()}
    names = {name: i for i, name in enumerate(label_map.names)}
    try:
        if label_map.task == "single_label":
            targets = np.array([names[label] for label in samples["label"]], dtype=np.int64)
        else:
            targets = np.zeros((len(samples), len(names)), dtype=np.float32)
            for row, labels in enumerate(samples["labels"]):
                targets[row, [names[label] for label in labels]] = 1.0
    except KeyError as error:
        raise ConfigError(f"label {error.args[0]!r} is not in the label map {list(names)}", path=store.path) from None
    return EmotionData(samples, features, targets, label_map, inputs, {k: v for k, v in dropped.items() if v})


# ------------------------------------------------------------------------------------- splits


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
        return {"train": train, "valid": valid, "test": test}

    split = samples["split"]
    if not (split == "train").any():
        hint = " (it has folds: use --folds)" if samples["fold"].notna().any() else ""
        raise ConfigError(f"the dataset has no train split{hint}")
    train = rows[(split == "train").fillna(False).to_numpy(dtype=bool)]
    valid = rows[(split == "valid").fillna(False).to_numpy(dtype=bool)]
    test = rows[(split == "test").fillna(False).to_numpy(dtype=bool)]
    if not len(valid) and groups is not None:
        train, valid = carve(train, groups, valid_fraction, seed)
    return {"train": train, "valid": valid, "test": test}


# ------------------------------------------------------------------------------------- batches


def dialogue_keys(samples: pd.DataFrame) -> pd.Series:
    """Each sample's dialogue. A sample outside any conversation (RAVDESS clips, manifests without
    dialogue_id) is a dialogue of one, so conversation models run on every dataset."""
    return samples["dialogue_id"].astype(object).where(samples["dialogue_id"].notna(), samples["sample_id"])


def dialogues(samples: pd.DataFrame, rows: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by dialogue (in order of first appearance), each ordered by position."""
    part = samples.iloc[rows][["position"]].assign(row=rows, dialogue_id=dialogue_keys(samples).iloc[rows])
    order = {d: i for i, d in enumerate(pd.unique(part["dialogue_id"]))}
    part = part.assign(order=part["dialogue_id"].map(order)).sort_values(["order", "position"], kind="stable")
    return [g["row"].to_numpy() for _, g in part.groupby("order", sort=True)]


@dataclass
class Batch:
    """Model inputs, masks (True = real) and targets of the N real samples, in the logits' order."""

    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    targets: torch.Tensor  # [N] long or [N, C] float
    rows: np.ndarray  # [N] row positions in EmotionData, in the order of the flattened outputs

    def to(self, device: torch.device) -> Batch:
        return Batch(
            {k: v.to(device, non_blocking=True) for k, v in self.inputs.items()},
            {k: v.to(device, non_blocking=True) for k, v in self.masks.items()},
            self.targets.to(device, non_blocking=True),
            self.rows,
        )

    @property
    def utterance_mask(self) -> torch.Tensor | None:
        return self.masks.get("utterance")

    def flatten(self, values: torch.Tensor) -> torch.Tensor:
        """[B, L, ...] per-utterance outputs of a conversation model -> [N, ...] real utterances."""
        mask = self.utterance_mask
        if mask is None or values.dim() < 3 or values.shape[:2] != mask.shape:
            return values
        return values[mask]


def _pad(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[T_i, D] arrays -> [B, T_max, D] zeros-padded and mask [B, T_max] (at least one frame wide)."""
    length = max(1, max(len(a) for a in arrays))
    dim = arrays[0].shape[-1]
    out = np.zeros((len(arrays), length, dim), dtype=np.float32)
    mask = np.zeros((len(arrays), length), dtype=bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def speaker_parties(samples: pd.DataFrame, parties: int) -> np.ndarray | None:
    """Each utterance's party within its dialogue: speakers numbered by first appearance (by position),
    capped at parties - 1, as DialogueRNN expects; None when the dataset names no speakers."""
    if samples["speaker"].isna().all():
        return None
    ordered = samples[["position", "speaker"]].assign(dialogue_id=dialogue_keys(samples))
    ordered = ordered.sort_values(["dialogue_id", "position"], kind="stable")
    index = ordered.groupby("dialogue_id", sort=False)["speaker"].transform(
        lambda speakers: pd.Series(pd.factorize(speakers)[0], index=speakers.index)
    )
    return np.clip(index.reindex(samples.index).to_numpy(dtype=np.int64), 0, parties - 1)  # NA speaker -> 0


class Collator:
    """Builds a Batch from dataset items: row positions (utterance models) or row arrays (dialogues).

    Conversation batches also carry inputs["speaker"] [B, L] (party indices) when `parties` is given and
    the dataset names speakers.
    """

    def __init__(self, data: EmotionData, conversation: bool, parties: int | None = None):
        self.data = data
        self.conversation = conversation
        self.speakers = speaker_parties(data.samples, parties) if conversation and parties else None

    def __call__(self, items: list[Any]) -> Batch:
        return self._dialogues(items) if self.conversation else self._utterances(np.asarray(items))

    def _utterances(self, rows: np.ndarray) -> Batch:
        inputs, masks = {}, {}
        for modality, spec in self.data.inputs.items():
            arrays = [self.data.features[modality][r] for r in rows]
            if spec.kind == "vector":
                inputs[modality] = torch.from_numpy(np.stack(arrays))
            else:
                inputs[modality], masks[modality] = _pad(arrays)
        return Batch(inputs, masks, torch.from_numpy(self.data.targets[rows]), rows)

    def _dialogues(self, groups: list[np.ndarray]) -> Batch:
        n_utt = max(len(g) for g in groups)
        utterance = torch.zeros(len(groups), n_utt, dtype=torch.bool)
        for i, g in enumerate(groups):
            utterance[i, : len(g)] = True
        inputs, masks = {}, {"utterance": utterance}
        for modality, spec in self.data.inputs.items():
            table = self.data.features[modality]
            if spec.kind == "vector":
                out = torch.zeros(len(groups), n_utt, spec.dim)
                for i, g in enumerate(groups):
                    out[i, : len(g)] = torch.from_numpy(np.stack([table[r] for r in g]))
                inputs[modality] = out
            else:  # [B, L, T, D] + [B, L, T]
                frames, frame_mask = _pad([table[r] for g in groups for r in g])
                out = torch.zeros(len(groups), n_utt, *frames.shape[1:])
                mask = torch.zeros(len(groups), n_utt, frames.shape[1], dtype=torch.bool)
                out[utterance], mask[utterance] = frames, frame_mask
                inputs[modality], masks[modality] = out, mask
        if self.speakers is not None:
            speaker = torch.zeros(len(groups), n_utt, dtype=torch.long)
            for i, g in enumerate(groups):
                speaker[i, : len(g)] = torch.from_numpy(self.speakers[g])
            inputs["speaker"] = speaker
        rows = np.concatenate(groups)  # batch-major, position order: the order of logits[utterance]
        return Batch(inputs, masks, torch.from_numpy(self.data.targets[rows]), rows)


def items(data: EmotionData, rows: np.ndarray, conversation: bool) -> list[Any]:
    """What a loader iterates over: samples, or whole dialogues for conversation models."""
    return dialogues(data.samples, rows) if conversation else list(rows)


def train_loader(
    data: EmotionData,
    rows: np.ndarray,
    *,
    conversation: bool,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    parties: int | None = None,
) -> torch.utils.data.DataLoader:
    """Shuffled batches; the order depends only on (seed, epoch): call `loader.sampler.set_epoch(e)`.
    A last batch of a single sample is dropped (BatchNorm cannot train on one).

    A DistributedSampler also in one process: the same code path, and a shuffle that needs no RNG state
    in the checkpoint to resume identically.
    """
    from torch.utils.data import DataLoader, DistributedSampler

    dataset = items(data, rows, conversation)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    # A last batch of one sample cannot train BatchNorm (CFN-SR's MFCCNet): drop it, as MMER drops all.
    drop_last = drop_last or len(sampler) % batch_size == 1
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=Collator(data, conversation, parties),
        drop_last=drop_last,
    )


def eval_loader(
    data: EmotionData,
    rows: np.ndarray,
    *,
    conversation: bool,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    parties: int | None = None,
) -> torch.utils.data.DataLoader:
    """Sequential batches of this rank's share (items rank, rank + W, ...): every item exactly once."""
    from torch.utils.data import DataLoader

    dataset = items(data, rows, conversation)[rank::world_size]
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=Collator(data, conversation, parties))
