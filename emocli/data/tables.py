"""The chosen feature sets joined on sample_id with the labels, in memory (features are small next to the
media they came from), in the order of the sample table.

A feature set holding NaN or infinite values is refused here, naming it and its first samples: training
on them ends in a crash inside sklearn or in NaN losses reported as chance accuracy. The store refuses
them at every write; this catches stores written by hand, by older versions or by other tools."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emocli.core.errors import ConfigError
from emocli.core.types import LabelMap
from emocli.data.inputs import InputSpec
from emocli.features.store import nonfinite_samples, table_to_features

if TYPE_CHECKING:
    from emocli.features.store import FeatureStore


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

    def subset(self, rows: np.ndarray) -> EmotionData:
        """These rows only, in this order."""
        return EmotionData(self.samples.iloc[rows].reset_index(drop=True),
                           {m: [values[i] for i in rows] for m, values in self.features.items()},
                           self.targets[rows], self.label_map, self.inputs, dict(self.dropped))


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
        table = store.read(spec.feature_set)
        bad = nonfinite_samples(table)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise ConfigError(
                f"feature set {spec.feature_set} holds NaN or infinite values for {len(bad)} samples ({shown}); "
                "extract them again (emo extract checks every value) or leave that feature set out",
                path=store.path,
            )
        values = table_to_features(table)
        present = samples["sample_id"].isin(values.keys())
        dropped[f"no {modality} features"] = int((~present).sum())
        samples = samples[present]
        per_modality[modality] = values
    samples = samples.reset_index(drop=True)
    if samples.empty:
        raise ConfigError("no labelled sample has every chosen feature set", path=store.path)

    # Raw clips hold pixel values 0..255: kept as uint8 in memory, a quarter of the stored float32.
    as_stored = {m: np.uint8 if inputs[m].kind == "clip" else None for m in per_modality}
    features = {
        m: [values[sid].values.astype(as_stored[m]) if as_stored[m] else values[sid].values for sid in samples["sample_id"]]
        for m, values in per_modality.items()
    }
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


