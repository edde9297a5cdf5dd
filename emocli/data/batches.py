"""Rows -> batches: utterance models get [B, ...] tensors with padded sequences and masks; conversation models
get whole dialogues, ordered by position and padded to [B, L, ...] with masks["utterance"]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from emocli.data.tables import EmotionData


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
            elif spec.kind == "clip":  # [B, 3, T, S, S], ImageNet-normalised as the 3D CNN expects
                from emocli.features.visual.clips import clip_tensor

                inputs[modality] = torch.stack([clip_tensor(a) for a in arrays])
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
